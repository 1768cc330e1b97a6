//! Sizes as users write them: `10G`, `512m`, `1.5GiB`, `1073741824`
//! (binary multiples, as Docker's `RAMInBytes`), and as docker shows them
//! (`go-units`' `HumanSize`: decimal units, as in progress bars and the
//! CLI's tables).

/// Parses a size; `None` if it is not one.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number.parse().ok()?;
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit.trim_end_matches("ib").trim_end_matches('b');
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        _ => return None,
    };
    let bytes = value * (1u64 << shift) as f64;
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// A size for people: `1GiB`, `512MiB`, `1.5GiB`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    let text = format!("{value:.2}");
    format!(
        "{}{}",
        text.trim_end_matches('0').trim_end_matches('.'),
        UNITS[unit]
    )
}

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
    fn sizes_parse_like_docker() {
        assert_eq!(parse_size("10G"), Some(10 << 30));
        assert_eq!(parse_size("512m"), Some(512 << 20));
        assert_eq!(parse_size("1.5GiB"), Some(3 << 29));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("1 GB"), Some(1 << 30));
        for bad in ["", "G", "ten", "1X", "-1G"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
        assert_eq!(format_size(3 << 29), "1.5GiB");
        assert_eq!(format_size(1 << 30), "1GiB");
    }

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
