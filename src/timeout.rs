//! Timeouts: `Option<Duration>` in the Rust API (`None` = wait for ever),
//! `int` milliseconds in the C API (`< 0` = wait for ever).

use std::time::{Duration, Instant};

/// The instant `timeout` from now; `None` (for ever) when there is no
/// timeout or it is too far away to represent.
pub(crate) fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|t| Instant::now().checked_add(t))
}

/// A C timeout (`ms < 0`: for ever) as a Rust one.
pub(crate) fn from_c_ms(ms: i32) -> Option<Duration> {
    u64::try_from(ms).ok().map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_timeouts_map_to_rust_ones() {
        assert_eq!(from_c_ms(-1), None);
        assert_eq!(from_c_ms(i32::MIN), None);
        assert_eq!(from_c_ms(0), Some(Duration::ZERO));
        assert_eq!(from_c_ms(1500), Some(Duration::from_millis(1500)));
    }

    #[test]
    fn a_deadline_too_far_away_is_none() {
        assert_eq!(deadline(None), None);
        assert_eq!(deadline(Some(Duration::MAX)), None);
        let d = deadline(Some(Duration::from_secs(1))).unwrap();
        assert!(d > Instant::now());
    }
}
