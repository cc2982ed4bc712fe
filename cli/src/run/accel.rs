//! Choosing the accelerator: KVM only when a probe VM really runs under it.

use super::*;

/// `tcg` or `kvm`; for `auto`, KVM only if a probe VM really runs under it (on some hosts
/// /dev/kvm opens but guests hang), remembered for the host's boot.
pub(super) fn choose_accel(accel: Accel, firmware: &Path, verbose: bool) -> Result<&'static str> {
    match accel {
        Accel::Tcg => Ok("tcg"),
        Accel::Kvm => {
            std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").fix(
                "--accel kvm: cannot open /dev/kvm",
                "load the kvm module and get access to it (group kvm), or use --accel tcg",
            )?;
            Ok("kvm")
        }
        Accel::Auto => {
            if std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_err() {
                return Ok("tcg");
            }
            let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
            // Valid until the host reboots or QEMU is replaced.
            let qemu = env::find_program(QEMU)
                .and_then(|p| p.metadata().ok())
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs());
            let key = format!("boot {} qemu {qemu}:", boot_id.trim());
            let record = env::cache_dir()?.join("accel-probe");
            if let Ok(text) = std::fs::read_to_string(&record) {
                if let Some(answer) = text.strip_prefix(&key).map(str::trim) {
                    return Ok(if answer == "kvm" { "kvm" } else { "tcg" });
                }
            }
            let works = probe_kvm(firmware);
            if verbose {
                eprintln!("flint: KVM probe: {}", if works { "works, using kvm" } else { "no working KVM, using tcg" });
            }
            let answer = if works { "kvm" } else { "tcg" };
            if let Ok(dir) = env::cache_subdir(".") {
                let tmp = env::temp_sibling(&dir.join("accel-probe"));
                if std::fs::write(&tmp, format!("{key} {answer}\n")).is_ok() {
                    let _ = std::fs::rename(&tmp, &record);
                }
            }
            Ok(answer)
        }
    }
}

/// Boots the firmware alone under KVM: with no kernel it ends at once through
/// isa-debug-exit with an odd status; a hang or an error means KVM does not work here.
pub(super) fn probe_kvm(firmware: &Path) -> bool {
    let mut vm = Vm::new(firmware);
    vm.accel = "kvm".into();
    vm.memory = "32M".into();
    vm.serial = Serial::None;
    let Ok(mut child) = vm.spawn(Stdio::null(), Stdio::null(), Stdio::null()) else {
        return false;
    };
    // A probe still running is killed as `child` goes.
    match child.wait_timeout(Duration::from_secs(3)) {
        Ok(Some(status)) => status.code().is_some_and(|code| code % 2 == 1 && code >= 3),
        _ => false,
    }
}
