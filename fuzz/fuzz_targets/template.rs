//! Templates: the admission check never panics, and a template it accepts renders (or
//! fails cleanly) against values of every shape, without panicking.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};

use contract::render::{check, render};
use libfuzzer_sys::fuzz_target;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let declared: BTreeSet<String> = ["db", "api", "cfg"].map(String::from).into();
    if check("db", src, &declared).is_ok() {
        let secrets: BTreeMap<String, serde_json::Value> = [
            (
                "db".to_string(),
                json!({"username": "app", "password": "p\"w\\:\n", "port": 5432}),
            ),
            ("api".to_string(), json!("token")),
            (
                "cfg".to_string(),
                json!({"nested": {"list": [1, "a", null]}}),
            ),
        ]
        .into();
        let _ = render("db", src, &secrets);
    }
});
