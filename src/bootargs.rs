//! Cairn's own command line (`/chosen/bootargs` of the host device tree, QEMU's
//! `-append`): space-separated `key=value` words.

use log::LevelFilter;

/// The value of `key=` in `args`, if present (the last occurrence wins).
pub fn value<'a>(args: &'a str, key: &str) -> Option<&'a str> {
    args.split_ascii_whitespace().filter_map(|w| w.strip_prefix(key)?.strip_prefix('=')).next_back()
}

/// `loglevel=` as a log filter: off, error, warn, info, debug or trace. Info by default.
pub fn log_level(args: &str) -> LevelFilter {
    value(args, "loglevel").and_then(|v| v.parse().ok()).unwrap_or(LevelFilter::Info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_values_and_defaults() {
        assert_eq!(value("a=1 loglevel=debug b", "loglevel"), Some("debug"));
        assert_eq!(value("xloglevel=debug", "loglevel"), None);
        assert_eq!(log_level("loglevel=trace"), LevelFilter::Trace);
        assert_eq!(log_level("loglevel=bogus"), LevelFilter::Info);
        assert_eq!(log_level(""), LevelFilter::Info);
        assert_eq!(log_level("loglevel=warn loglevel=error"), LevelFilter::Error);
    }
}
