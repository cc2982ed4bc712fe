//! Loading the kernel modules listed in `flint.modules`, in order, from the initramfs.
//!
//! There is no modprobe and no modules.dep: the list itself is the load order, so a module's
//! dependencies must come before it (the host CLI works the order out as modprobe would:
//! dependencies, soft dependencies, aliases). `finit_module` lets the kernel read the file itself, so nothing is copied.
//! Each module gets the parameters the command line gives it (`<module>.<param>=<value>`),
//! as modprobe would pass them: e.g. the `virtio_mmio.device=` words QEMU adds on a microvm
//! without ACPI.

use crate::params::{self, Modules};
use crate::report::Failure;
use crate::status;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

const DIR: &[u8] = b"/lib/modules/";
const SUFFIX: &[u8] = b".ko";

pub fn load(modules: Modules<'_>, cmdline: &[u8]) -> Result<(), Failure> {
    let mut module_params = [0; params::CMDLINE_MAX];
    for name in modules.iter() {
        load_one(name, params::module_params(cmdline, name, &mut module_params))?;
    }
    Ok(())
}

fn load_one(name: &[u8], module_params: &core::ffi::CStr) -> Result<(), Failure> {
    // Names were checked to be at most 55 bytes, so the path always fits.
    let mut path = [0u8; 80];
    let len = DIR.len() + name.len() + SUFFIX.len();
    path[..DIR.len()].copy_from_slice(DIR);
    path[DIR.len()..DIR.len() + name.len()].copy_from_slice(name);
    path[len - SUFFIX.len()..len].copy_from_slice(SUFFIX);
    let path = &path[..len];

    let file = rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).map_err(|errno| {
        Failure::new(status::MODULE_FAILED)
            .text("cannot open module ")
            .bytes(path)
            .text(": ")
            .errno(errno)
            .text(": put it in the initramfs or drop it from flint.modules")
    })?;
    match rustix::system::finit_module(&file, module_params, 0) {
        // Built in or already loaded: what we wanted is there.
        Ok(()) | Err(Errno::EXIST) => Ok(()),
        Err(errno) => Err(Failure::new(status::MODULE_FAILED)
            .text("kernel refused module ")
            .bytes(name)
            .text(": ")
            .errno(errno)
            .text(match errno {
                // ENOENT from the loader means an unresolved symbol.
                Errno::NOENT => ": list the modules it depends on before it in flint.modules",
                // Unsigned under module.sig_enforce, or under lockdown: flint strips signatures
                // unless it sees those on the command line it builds.
                Errno::KEYREJECTED | Errno::PERM => {
                    ": the kernel takes signed modules only: add module.sig_enforce=1 to flint's --append so it keeps their signatures"
                }
                _ => ": use the modules built for this kernel (see dmesg for details)",
            })),
    }
}
