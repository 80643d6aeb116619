//! Failpoints: named places where a crash test can stop the process on purpose.
//!
//! `GANTRY_FAILPOINTS=after-side-effect:retag,after-finish:update-config` makes the process
//! abort (as a kill -9 would: no unwinding, no cleanup) the first time it reaches one of the
//! named places. Unset, a failpoint costs one lookup in an empty list.

use std::sync::OnceLock;

static ARMED: OnceLock<Vec<String>> = OnceLock::new();

/// Aborts the process if `point` is armed.
pub fn hit(point: &str) {
    let armed = ARMED.get_or_init(|| {
        std::env::var("GANTRY_FAILPOINTS")
            .map(|v| v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
            .unwrap_or_default()
    });
    if armed.iter().any(|p| p == point) {
        eprintln!("failpoint {point} reached: aborting");
        std::process::abort();
    }
}
