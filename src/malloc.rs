//! The process's memory allocator: glibc's malloc with one arena.
//!
//! By default glibc gives each thread that allocates an arena of its own (up to eight per
//! core). karat's runs free and allocate buffers of megabytes on many threads by turns (the
//! tokio workers, the blocking threads that decode and validate, the Parquet writers), and
//! those spread over up to sixteen arenas that each keep their free memory: the peak of a
//! daily run then grew with the lake's history although its live heap did not (heaptrack:
//! 216 MB on day 1, 238 MB on day 10 of the daily bench). With one arena, the last day's peak
//! of the daily benches is within 1.3x of the first day's and the 5M-line run's is 560–620 MB,
//! in the same time; with mimalloc, used before, 1.6–2.4x and 750–840 MB (figures in the
//! README, "Performance").
//!
//! glibc reads the arena limit (`MALLOC_ARENA_MAX`) from the environment only when the
//! process starts, and setting it from Rust afterwards takes `unsafe` (`mallopt`), which
//! karat forbids. So the binary, first thing, starts itself again (the same process: `exec`
//! keeps its id, its open files and its terminal) with `MALLOC_ARENA_MAX=1` added, unless the
//! environment already names a limit: an operator's own value is kept.

/// The environment variable glibc reads its arena limit from.
pub const ARENA_MAX: &str = "MALLOC_ARENA_MAX";

/// What karat sets it to.
pub const ONE: &str = "1";

/// Whether karat should start itself again to set the limit: not when the environment
/// already has one.
pub fn needs_restart(current: Option<&std::ffi::OsStr>) -> bool {
    current.is_none()
}

/// Starts this program again, in this process, with [`ARENA_MAX`] set to [`ONE`] unless it is
/// set already. Returns only when it did not (set already, not Linux, or `exec` failed: karat
/// then runs on with glibc's defaults).
pub fn use_one_arena() {
    if !needs_restart(std::env::var_os(ARENA_MAX).as_deref()) {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        let Ok(exe) = std::env::current_exe() else {
            return;
        };
        let mut args = std::env::args_os();
        let mut command = std::process::Command::new(exe);
        if let Some(name) = args.next() {
            command.arg0(name);
        }
        // `exec` returns only on failure
        let _failed = command.args(args).env(ARENA_MAX, ONE).exec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operators_own_limit_is_kept() {
        assert!(needs_restart(None));
        assert!(!needs_restart(Some(std::ffi::OsStr::new("4"))));
        assert!(!needs_restart(Some(std::ffi::OsStr::new(ONE))));
    }
}
