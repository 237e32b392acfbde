//! The env files of env mode: the JSON one `exec` reads never panics, and what it
//! accepts is only valid names and NUL-free values; the kubelet's `NAME='value'` one
//! init writes from those variables either refuses a value or ends every value at its
//! own closing quote (one line per name, in order).
#![no_main]

use agent::exec::parse;
use contract::envfile::{kubelet_env_file, valid_env_name};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(vars) = parse(data, "env.json") {
        for (name, value) in &vars {
            assert!(valid_env_name(name), "{name:?}");
            assert!(!value.contains('\0'));
        }
        if let Ok(bytes) = kubelet_env_file(&vars) {
            let text = String::from_utf8(bytes).unwrap();
            let mut rest = text.as_str();
            for (name, value) in &vars {
                let line = format!("{name}='{value}'\n");
                assert!(rest.starts_with(&line), "{name:?}");
                assert!(!value.contains('\'') && !value.contains("\r\n"));
                rest = &rest[line.len()..];
            }
            assert!(rest.is_empty());
        }
    }
});
