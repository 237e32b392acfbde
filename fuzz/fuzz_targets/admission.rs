//! The AdmissionReview -> response path: any body gets an answer or a clean error,
//! never a panic; an answer is an AdmissionReview with the request's uid.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webhook::admission::review;
use webhook::config::Config;
use webhook::mutation::spec::Context;

fuzz_target!(|data: &[u8]| {
    if let Ok((bytes, _)) = review(data, &Config::default(), |_, _| Context::default()) {
        let answer: serde_json::Value =
            serde_json::from_slice(&bytes).expect("the response is JSON");
        assert_eq!(answer["kind"], "AdmissionReview");
        assert!(answer["response"]["uid"].is_string(), "{answer}");
    }
});
