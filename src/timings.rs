//! Benchmark diagnostics: a process's peak resident memory, read from Linux's `/proc`
//! (VmHWM), which the benchmarks report, and [`Clock`], which with `KARAT_TIMINGS` set notes
//! how long each step of a run took, the processor time it used on every core, and the peak
//! so far. Elsewhere (no `/proc`) there is no memory or processor figure.

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

/// Processor time this process has used so far on all its threads (user and system), in
/// seconds, from `/proc/self/stat` (kernel ticks of 1/100 s).
pub fn cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    // the fields after the command name (in parentheses, which may hold spaces): state is the
    // first, user time the twelfth, system time the thirteenth
    let mut fields = s.rsplit_once(')')?.1.split_whitespace().skip(11);
    let user: f64 = fields.next()?.parse().ok()?;
    let system: f64 = fields.next()?.parse().ok()?;
    Some((user + system) / 100.0)
}

/// Starts this process's peak over from its current resident memory.
pub fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// With `KARAT_TIMINGS` set, notes how long each step took since the last, the processor time
/// it used (on all cores: more than its time when it used both; the whole process's, so in a
/// long-lived process whatever else ran meanwhile too), and the peak memory after it, as
/// `<what>: <step> 0.123s cpu 0.20s (peak 456 MB)`.
pub struct Clock<'a> {
    what: String,
    events: &'a Events,
    on: bool,
    last: std::time::Instant,
    last_cpu: f64,
}

impl<'a> Clock<'a> {
    pub fn new(what: String, events: &'a Events) -> Clock<'a> {
        let on = std::env::var_os("KARAT_TIMINGS").is_some();
        Clock {
            what,
            events,
            on,
            last: std::time::Instant::now(),
            last_cpu: if on {
                cpu_seconds().unwrap_or(0.0)
            } else {
                0.0
            },
        }
    }

    /// Notes the step that just ended.
    pub fn lap(&mut self, step: &str) {
        if self.on {
            let t = self.last.elapsed().as_secs_f64();
            let cpu = cpu_seconds().unwrap_or(0.0);
            let used = cpu - self.last_cpu;
            self.last_cpu = cpu;
            let peak = peak_mb().unwrap_or(0.0);
            let line = format!(
                "{}: {step} {t:.3}s cpu {used:.2}s (peak {peak:.0} MB)",
                self.what
            );
            // a benchmark diagnostic: also on stderr, where `karat bench` runs have no events
            eprintln!("{line}");
            self.events.note(line);
        }
        self.last = std::time::Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn processor_time_grows_with_work() {
        let before = cpu_seconds().expect("/proc/self/stat");
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_millis(60) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        assert!(x != 1);
        let after = cpu_seconds().expect("/proc/self/stat");
        assert!(after > before, "{before} -> {after}");
    }
}
