//! Benchmark diagnostics: a process's peak resident memory, read from Linux's `/proc`
//! (VmHWM), which the benchmarks report, and [`Clock`], which with `KARAT_TIMINGS` set notes
//! how long each step of a run took and the peak so far. Elsewhere (no `/proc`) there is no
//! memory figure.

use crate::events::Events;

/// VmHWM (peak resident memory) of a process's status file, in kB.
pub fn peak_kb_of(status_file: &str) -> Option<f64> {
    let s = std::fs::read_to_string(status_file).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// This process's peak resident memory so far, in MB.
pub fn peak_mb() -> Option<f64> {
    peak_kb_of("/proc/self/status").map(|kb| kb / 1024.0)
}

/// Starts this process's peak over from its current resident memory.
pub fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// With `KARAT_TIMINGS` set, notes how long each step took since the last, and the peak
/// memory after it, as `<what>: <step> 0.123s (peak 456 MB)`.
pub struct Clock<'a> {
    what: String,
    events: &'a Events,
    on: bool,
    last: std::time::Instant,
}

impl<'a> Clock<'a> {
    pub fn new(what: String, events: &'a Events) -> Clock<'a> {
        Clock {
            what,
            events,
            on: std::env::var_os("KARAT_TIMINGS").is_some(),
            last: std::time::Instant::now(),
        }
    }

    /// Notes the step that just ended.
    pub fn lap(&mut self, step: &str) {
        if self.on {
            let t = self.last.elapsed().as_secs_f64();
            let peak = peak_mb().unwrap_or(0.0);
            let line = format!("{}: {step} {t:.3}s (peak {peak:.0} MB)", self.what);
            // a benchmark diagnostic: also on stderr, where `karat bench` runs have no events
            eprintln!("{line}");
            self.events.note(line);
        }
        self.last = std::time::Instant::now();
    }
}
