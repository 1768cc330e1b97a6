//! Docker's JSON progress messages (`jsonmessage.JSONMessage`) for the
//! registry's typed events, with the bar text dockerd's formatter writes
//! (`JSONProgress.String()` at its default width).

use berth_core::image::registry::{LayerState, ProgressEvent};
use serde_json::{json, Value};

/// The message for one event.
pub fn render(event: &ProgressEvent) -> Value {
    match event {
        ProgressEvent::Layer { id, state } => layer(id, state),
        ProgressEvent::Message { id: Some(id), text } => json!({"status": text, "id": id}),
        ProgressEvent::Message { id: None, text } => json!({"status": text}),
        ProgressEvent::PushResult { tag, digest, size } => {
            json!({"progressDetail": {}, "aux": {"Tag": tag, "Digest": digest, "Size": size}})
        }
    }
}

fn layer(id: &str, state: &LayerState) -> Value {
    match state.bar() {
        Some((current, total)) => json!({
            "status": state.status(),
            "progressDetail": {"current": current, "total": total},
            "progress": bar(current, total),
            "id": id,
        }),
        None => json!({"status": state.status(), "progressDetail": {}, "id": id}),
    }
}

/// An error inside a progress stream.
pub fn error(message: &str) -> Value {
    json!({"errorDetail": {"message": message}, "error": message})
}

/// `[=====>     ] 1.5MB/3.2MB`: 50 cells, as dockerd draws it when the
/// width is unknown (wider than 110 columns).
pub fn bar(current: u64, total: u64) -> String {
    if total == 0 {
        return format!("{:>8}", human_size(current));
    }
    let filled = ((current as f64 / total as f64 * 100.0) as usize / 2).min(50);
    let numbers = if current > total {
        format!("{:>8}", human_size(current))
    } else {
        format!("{:>8}/{}", human_size(current), human_size(total))
    };
    format!(
        "[{}>{}] {numbers}",
        "=".repeat(filled),
        " ".repeat(50 - filled)
    )
}

/// go-units' `HumanSize`: decimal units, four significant digits.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1000.0 && unit < UNITS.len() - 1 {
        size /= 1000.0;
        unit += 1;
    }
    format!("{}{}", four_digits(size), UNITS[unit])
}

/// `%.4g` for 0 ≤ x < 1000: four significant digits, trailing zeros cut.
fn four_digits(x: f64) -> String {
    let integer_digits = if x < 1.0 {
        1
    } else {
        x.log10().floor() as i32 + 1
    };
    let decimals = (4 - integer_digits).max(0) as usize;
    let text = format!("{x:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_go_units() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(512), "512B");
        assert_eq!(human_size(32768), "32.77kB");
        assert_eq!(human_size(1_000_000), "1MB");
        assert_eq!(human_size(2_811_478), "2.811MB");
    }

    #[test]
    fn bars_fill_by_halves_of_percent() {
        let b = bar(1_000_000, 2_000_000);
        assert_eq!(
            b,
            format!("[{}>{}]      1MB/2MB", "=".repeat(25), " ".repeat(25))
        );
        assert!(bar(2, 2).starts_with(&format!("[{}>]", "=".repeat(50))));
    }
}
