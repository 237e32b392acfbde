//! Release binaries are linked with packed relative relocations (DT_RELR: 0.9 MB of
//! `.rela.dyn` becomes 12 KB, and a process no longer reads it all at start) and
//! identical code folding, by Rust's bundled LLD. Only where that was tried and works:
//!
//! - `x86_64-unknown-linux-gnu`, built for the host itself, whose glibc loads DT_RELR
//!   (2.36+: Debian 12, Ubuntu 24.04); Rust links with its LLD there already (the
//!   default since Rust 1.90). Such a binary needs glibc 2.36+ wherever it runs.
//! - `x86_64-unknown-linux-musl` (the image): a static PIE whose start code, from Rust's
//!   bundled musl, applies DT_RELR itself; LLD replaces the system linker, for `--icf`.
//!
//! On the glibc host build, `secret-injector` is also laid out by `link-order.txt`
//! (`--symbol-ordering-file`): the functions its roles execute sit together, so a
//! process maps about 2 MiB of code rather than 8 (scripts/link-order.sh writes it).
//!
//! Anything else (another target, a linker of one's own, a toolchain without LLD)
//! links as before. See docs/performance.md, "Binary size" and "Code layout".

use std::path::PathBuf;
use std::process::Command;

#[path = "benches/common/lock_digest.rs"]
mod lock_digest;
use lock_digest::lock_digest;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let (target, host) = (var("TARGET"), var("HOST"));
    let own_linker =
        !var("RUSTC_LINKER").is_empty() || var("CARGO_ENCODED_RUSTFLAGS").contains("link");
    if var("PROFILE") != "release" || own_linker {
        return;
    }
    let Some(gcc_ld) = bundled_lld(&host) else {
        return;
    };
    match target.as_str() {
        "x86_64-unknown-linux-gnu" if target == host && glibc_loads_relr() => link_order(),
        "x86_64-unknown-linux-musl" => {
            println!("cargo:rustc-link-arg-bins=-B{}", gcc_ld.display());
            println!("cargo:rustc-link-arg-bins=-fuse-ld=lld");
        }
        _ => return,
    }
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    println!("cargo:rustc-link-arg-bins=-Wl,--icf=all");
}

/// The file LLD lays the functions of `secret-injector` out by.
const ORDER_FILE: &str = "link-order.txt";

/// Pass [`ORDER_FILE`] to LLD for `secret-injector`. Names it lists that the binary no
/// longer has are skipped silently: a stale file costs memory, never a build. A file
/// made by another rustc or for another Cargo.lock names other symbols (the crates'
/// hashes differ): say so, with the command that makes it again.
fn link_order() {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let Ok(text) = std::fs::read_to_string(dir.join(ORDER_FILE)) else {
        return;
    };
    println!("cargo:rerun-if-changed={ORDER_FILE}");
    println!("cargo:rerun-if-changed=Cargo.lock");
    // `-Xlinker`, not `-Wl,`: the driver would split a path holding a comma.
    let arg = |a: String| println!("cargo:rustc-link-arg-bin=secret-injector={a}");
    arg("-Xlinker".into());
    arg(format!(
        "--symbol-ordering-file={}",
        dir.join(ORDER_FILE).display()
    ));
    arg("-Xlinker".into());
    arg("--no-warn-symbol-ordering".into());
    let recorded = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or("unknown")
            .to_string()
    };
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let this_rustc = Command::new(rustc)
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let this_lock = std::fs::read(dir.join("Cargo.lock"))
        .map(|l| lock_digest(&l))
        .unwrap_or_default();
    let stale = if recorded("# rustc: ") != this_rustc {
        format!("was made with {}, not {this_rustc}", recorded("# rustc: "))
    } else if recorded("# Cargo.lock: ") != this_lock {
        "was made for another Cargo.lock".to_string()
    } else {
        return;
    };
    println!(
        "cargo:warning={ORDER_FILE} {stale}: the binary's code is not laid out for its \
         roles (more memory per process); run scripts/link-order.sh"
    );
}

/// The directory holding the toolchain's `ld.lld` for the C compiler driver (`-B`), if
/// it ships one (a distribution's rustc may link with the system's `cc` and GNU ld,
/// which has no `--icf`).
fn bundled_lld(host: &str) -> Option<PathBuf> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()?;
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let dir = PathBuf::from(sysroot)
        .join("lib/rustlib")
        .join(host)
        .join("bin/gcc-ld");
    dir.join("ld.lld").exists().then_some(dir)
}

/// `getconf GNU_LIBC_VERSION` says "glibc 2.36" or later.
fn glibc_loads_relr() -> bool {
    let Ok(out) = Command::new("getconf").arg("GNU_LIBC_VERSION").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut version = text.trim().strip_prefix("glibc ").unwrap_or("").split('.');
    let major: u32 = version.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    let minor: u32 = version.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    (major, minor) >= (2, 36)
}
