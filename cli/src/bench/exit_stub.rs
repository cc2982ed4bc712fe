//! Guest code that ends QEMU at once through isa-debug-exit (port 0x501): QEMU then exits
//! with status `(value << 1) | 1`. Each entry point of the null kernels writes its own value,
//! so QEMU's exit status proves which entry a firmware took.

/// Where guest code can start: the floor ROM's reset vector, or one of the null kernels'
/// entry points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// The floor ROM's reset vector: no firmware, no kernel.
    ResetVector,
    /// bzImage real-mode entry, offset 0x200 of the setup part (qboot and SeaBIOS jump here).
    RealMode,
    /// bzImage 32-bit entry, offset 0 of the protected-mode part (`code32_start`).
    Protected32,
    /// bzImage 64-bit entry, offset 0x200 of the protected-mode part (flint jumps here).
    Long64,
    /// PVH entry, the address in the ELF note XEN_ELFNOTE_PHYS32_ENTRY (32-bit, no paging).
    Pvh,
}

impl Entry {
    const ALL: [Entry; 5] = [Entry::ResetVector, Entry::RealMode, Entry::Protected32, Entry::Long64, Entry::Pvh];

    /// The byte written to isa-debug-exit. The kernels' values start at 0x50, clear of the
    /// statuses flint's firmware ends with on errors (16-31) and of 0 (the floor).
    fn value(self) -> u8 {
        match self {
            Entry::ResetVector => 0,
            Entry::RealMode => 0x50,
            Entry::Protected32 => 0x51,
            Entry::Long64 => 0x52,
            Entry::Pvh => 0x53,
        }
    }

    /// QEMU's exit status once this entry ran.
    pub fn qemu_status(self) -> i32 {
        (i32::from(self.value()) << 1) | 1
    }

    /// The entry whose code ends QEMU with `status`, if any.
    pub fn from_qemu_status(status: i32) -> Option<Entry> {
        Entry::ALL.into_iter().find(|entry| entry.qemu_status() == status)
    }

    pub fn describe(self) -> &'static str {
        match self {
            Entry::ResetVector => "the floor ROM's reset vector",
            Entry::RealMode => "the bzImage real-mode entry",
            Entry::Protected32 => "the bzImage 32-bit entry",
            Entry::Long64 => "the bzImage 64-bit entry",
            Entry::Pvh => "the PVH entry",
        }
    }

    /// The machine code for this entry, in the CPU mode the entry runs in.
    pub fn code(self) -> Vec<u8> {
        let real_mode = matches!(self, Entry::ResetVector | Entry::RealMode);
        exit_code(self.value(), real_mode)
    }
}

/// ```text
///   [66] BA 01 05   mov dx, 0x501    ; 16-bit operand: needs the 0x66 prefix in 32/64-bit mode
///        B0 vv      mov al, value
///        EE         out dx, al       ; QEMU exits here
///        F4         hlt              ; never reached with the device present...
///        EB FD      jmp $-1          ; ...and if it is absent, stay halted
/// ```
/// 32-bit and 64-bit mode encode these instructions identically.
fn exit_code(value: u8, real_mode: bool) -> Vec<u8> {
    let prefix: &[u8] = if real_mode { &[] } else { &[0x66] };
    [prefix, &[0xBA, 0x01, 0x05, 0xB0, value, 0xEE, 0xF4, 0xEB, 0xFD]].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_exit_for_each_cpu_mode() {
        assert_eq!(Entry::RealMode.code(), [0xBA, 0x01, 0x05, 0xB0, 0x50, 0xEE, 0xF4, 0xEB, 0xFD]);
        assert_eq!(Entry::Long64.code(), [0x66, 0xBA, 0x01, 0x05, 0xB0, 0x52, 0xEE, 0xF4, 0xEB, 0xFD]);
        assert_eq!(Entry::Pvh.code()[0], 0x66);
    }

    #[test]
    fn every_entry_has_its_own_status() {
        for entry in Entry::ALL {
            assert_eq!(Entry::from_qemu_status(entry.qemu_status()), Some(entry));
            // A status must survive as a process exit code (8 bits).
            assert!(entry.qemu_status() < 256);
        }
        assert_eq!(Entry::ResetVector.qemu_status(), 1);
        assert_eq!(Entry::from_qemu_status(0), None);
    }
}
