//! docker's `go-units` sizes (`units.HumanSize`): one implementation for
//! the API's progress bars and the berth CLI's tables.

/// docker's `units.HumanSize`: decimal units, four significant digits.
pub fn human_size(bytes: f64) -> String {
    human_size_with_precision(bytes, 4)
}

/// docker's `units.HumanSizeWithPrecision`: decimal units, `precision`
/// significant digits.
pub fn human_size_with_precision(bytes: f64, precision: i32) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut size = bytes;
    let mut unit = 0;
    while size >= 1000.0 && unit < UNITS.len() - 1 {
        size /= 1000.0;
        unit += 1;
    }
    format!("{}{}", go_g(size, precision), UNITS[unit])
}

/// Go's `%.<precision>g` for the magnitudes human sizes produce (< 1000).
fn go_g(v: f64, precision: i32) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let digits = precision - 1 - v.abs().log10().floor() as i32;
    let s = format!("{:.*}", digits.max(0) as usize, v);
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes_match_go_units() {
        assert_eq!(human_size(0.0), "0B");
        assert_eq!(human_size(1_048_576.0), "1.049MB");
        assert_eq!(human_size(4096.0), "4.096kB");
        assert_eq!(human_size(1000.0), "1kB");
        assert_eq!(human_size(512.0), "512B");
        assert_eq!(human_size_with_precision(102_400.0, 3), "102kB");
        assert_eq!(human_size_with_precision(1_984_290.0, 3), "1.98MB");
        // What pull and push bars show.
        assert_eq!(human_size(32768.0), "32.77kB");
        assert_eq!(human_size(1_000_000.0), "1MB");
        assert_eq!(human_size(2_811_478.0), "2.811MB");
    }
}
