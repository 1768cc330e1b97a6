//! Docker's JSON progress messages (`jsonmessage.JSONMessage`) for the
//! registry's typed events, with the bar text dockerd's formatter writes
//! (`JSONProgress.String()` at its default width).

use berth_core::image::registry::{LayerState, ProgressEvent};
use berth_core::sys::units::human_size;
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

/// A byte count of a local operation (clone, backup, restore) under way.
pub fn bytes_done(status: &str, id: &str, current: u64, total: u64) -> Value {
    json!({"status": status, "id": id, "progressDetail": {"current": current, "total": total}})
}

/// One message as a line of a JSON-lines stream.
pub fn line(message: &Value) -> bytes::Bytes {
    let mut bytes = serde_json::to_vec(message).unwrap_or_default();
    bytes.push(b'\n');
    bytes::Bytes::from(bytes)
}

/// An error inside a progress stream.
pub fn error(message: &str) -> Value {
    json!({"errorDetail": {"message": message}, "error": message})
}

/// `[=====>     ] 1.5MB/3.2MB`: 50 cells, as dockerd draws it when the
/// width is unknown (wider than 110 columns).
pub fn bar(current: u64, total: u64) -> String {
    if total == 0 {
        return format!("{:>8}", human_size(current as f64));
    }
    let filled = ((current as f64 / total as f64 * 100.0) as usize / 2).min(50);
    let numbers = if current > total {
        format!("{:>8}", human_size(current as f64))
    } else {
        format!(
            "{:>8}/{}",
            human_size(current as f64),
            human_size(total as f64)
        )
    };
    format!(
        "[{}>{}] {numbers}",
        "=".repeat(filled),
        " ".repeat(50 - filled)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
