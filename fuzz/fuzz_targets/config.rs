//! The config loader: YAML, then `SECRET_INJECTOR_*` overrides. Input: the YAML, then
//! after a NUL byte `NAME=value` lines for the environment. Never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webhook::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (yaml, env) = text.split_once('\0').unwrap_or((text, ""));
    let env: Vec<(String, String)> = env
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (format!("SECRET_INJECTOR_{k}"), v.to_string()))
        .collect();
    let _ = Config::from_yaml_and_env(yaml, env);
});
