//! How sizes and rates are written, in the flags and in the daemon's
//! configuration.

/// How every size and rate of the flags and of the daemon's configuration
/// is read: units are binary multiples whatever their spelling (`k`, `K`,
/// `KB` and `KiB` all mean 1024 bytes; `10MB` is 10 MiB).
const SIZE_UNITS: parse_size::Config = parse_size::Config::new().with_binary();

/// A positive number of bytes written plain or with a unit: `512k`, `4M`,
/// `4MiB`, `10MB`, `1.5G`, `1T`, all binary multiples ([`SIZE_UNITS`]).
/// `None` if `text` is not one.
pub(crate) fn parse_bytes(text: &str) -> Option<f64> {
    match SIZE_UNITS.parse_size(text.trim()) {
        Ok(bytes) if bytes > 0 => Some(bytes as f64),
        _ => None,
    }
}
