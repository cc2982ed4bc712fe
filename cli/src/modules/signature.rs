//! Module signatures: kept only where the guest's kernel insists on them.

use crate::kernel::Kernel;

/// Whether the modules put in an initramfs keep their signatures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signatures {
    Keep,
    /// Checking a signature costs the guest a SHA-256 of the whole module and an RSA
    /// verification: 32 ms for the six modules of Debian's kernel under TCG (BENCHMARKS.md),
    /// to vouch for files the host took from the kernel's own module tree.
    Strip,
}

impl Signatures {
    /// What flint's init gets: stripped, unless the kernel refuses unsigned modules, which it
    /// does with `CONFIG_MODULE_SIG_FORCE`, `module.sig_enforce` or kernel lockdown among
    /// `params` (the kernel command line's words).
    pub fn for_flint_init<'a>(kernel: &Kernel, params: impl IntoIterator<Item = &'a str>) -> Signatures {
        Signatures::unless_enforced(kernel.has_builtin("CONFIG_MODULE_SIG_FORCE"), params)
    }

    fn unless_enforced<'a>(forced_by_config: bool, params: impl IntoIterator<Item = &'a str>) -> Signatures {
        let enforces = |word: &str| {
            word == "module.sig_enforce" || word.starts_with("module.sig_enforce=") || word.starts_with("lockdown=")
        };
        if forced_by_config || params.into_iter().any(enforces) {
            Signatures::Keep
        } else {
            Signatures::Strip
        }
    }

    /// `module` as the initramfs gets it.
    pub(super) fn apply(self, module: &[u8]) -> &[u8] {
        match self {
            Signatures::Keep => module,
            Signatures::Strip => without_signature(module),
        }
    }
}

/// What `sign-file` appends to a module, last.
const SIGNATURE_MARKER: &[u8] = b"~Module signature appended~\n";
/// `struct module_signature`, between the signature and the marker; it ends with the
/// signature's length, big-endian.
const SIGNATURE_INFO_LEN: usize = 12;

/// `module` without its appended signature; unchanged if it has none (or a malformed one,
/// which the kernel then reports).
fn without_signature(module: &[u8]) -> &[u8] {
    let Some(signed) = module.strip_suffix(SIGNATURE_MARKER) else { return module };
    let Some(info_at) = signed.len().checked_sub(SIGNATURE_INFO_LEN) else { return module };
    let length_bytes: [u8; 4] = signed[signed.len() - 4..].try_into().unwrap_or_default();
    match info_at.checked_sub(u32::from_be_bytes(length_bytes) as usize) {
        Some(end) => &module[..end],
        None => module,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::fake::fake_module;

    fn signed(module: &[u8], signature: &[u8]) -> Vec<u8> {
        let mut signed = module.to_vec();
        signed.extend_from_slice(signature);
        // algorithm, hash, id type, signer and key id lengths, padding: as sign-file writes them.
        signed.extend_from_slice(&[0, 0, 2, 0, 0, 0, 0, 0]);
        signed.extend_from_slice(&(signature.len() as u32).to_be_bytes());
        signed.extend_from_slice(SIGNATURE_MARKER);
        signed
    }

    #[test]
    fn strips_an_appended_signature_and_nothing_else() {
        let module = fake_module(b"depends=virtio\0");
        assert_eq!(without_signature(&signed(&module, &[0x30; 681])), &module[..]);
        assert_eq!(without_signature(&module), &module[..]);
        // A length pointing before the start of the file leaves it as it is.
        let mut broken = signed(&module, b"sig");
        let length_at = broken.len() - SIGNATURE_MARKER.len() - 4;
        broken[length_at..length_at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(without_signature(&broken), &broken[..]);
    }

    #[test]
    fn keeps_signatures_where_the_kernel_demands_them() {
        assert_eq!(Signatures::unless_enforced(true, ["quiet"]), Signatures::Keep);
        assert_eq!(Signatures::unless_enforced(false, ["quiet", "module.sig_enforce=1"]), Signatures::Keep);
        assert_eq!(Signatures::unless_enforced(false, ["module.sig_enforce"]), Signatures::Keep);
        assert_eq!(Signatures::unless_enforced(false, ["lockdown=integrity"]), Signatures::Keep);
        assert_eq!(Signatures::unless_enforced(false, ["quiet", "module.blacklist=x"]), Signatures::Strip);
        let module = fake_module(b"name=x\0");
        assert_eq!(Signatures::Keep.apply(&signed(&module, b"sig")).len(), module.len() + 3 + 40);
        assert_eq!(Signatures::Strip.apply(&signed(&module, b"sig")), &module[..]);
    }
}
