//! The `filters` query parameter in both of Docker's encodings, then every
//! check that reads it: never a panic, only `invalid filter`-style errors.
#![no_main]
use berth_api::request::decode_filters;
use berth_core::volume::filters;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(f) = decode_filters(text) else {
        return;
    };
    let _ = filters::check_keys(&f, &["dangling", "driver", "label", "name"]);
    let _ = filters::dangling_value(&f);
    let _ = filters::all_value(&f);
    let _ = filters::until_cutoff(&f, 1_700_000_000);
    let _ = filters::NameFilter::new(&f);
    let labels = [("a".to_string(), "b".to_string())].into_iter().collect();
    let _ = filters::labels_match(&f, "label", &labels);
    let _ = filters::labels_excluded(&f, &labels);
});
