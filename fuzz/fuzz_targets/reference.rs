//! The reference parser: never panics, and a parsed reference's text parses back to
//! the same reference (the plan hands references to the pod as text).
#![no_main]

use contract::reference::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = parse(text) {
        let again =
            parse(&r.to_string()).unwrap_or_else(|e| panic!("`{r}` does not parse back: {e}"));
        assert_eq!(again, r, "round trip of `{r}`");
        let _ = (r.location(), r.gcp_secret(), r.azure_secret(), r.ssm_name());
    }
});
