//! The env file `exec` reads: never panics, and what it accepts is only valid names
//! and NUL-free values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use secret_injector::agent::exec::parse;
use secret_injector::contract::envfile::valid_env_name;

fuzz_target!(|data: &[u8]| {
    if let Ok(vars) = parse(data, "env.json") {
        for (name, value) in &vars {
            assert!(valid_env_name(name), "{name:?}");
            assert!(!value.contains('\0'));
        }
    }
});
