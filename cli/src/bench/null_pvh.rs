//! A null kernel in PVH form: an ELF64 executable with one PT_LOAD holding everything and a
//! PT_NOTE with Xen's XEN_ELFNOTE_PHYS32_ENTRY, the note QEMU (and Linux's PVH boot) use to
//! find the 32-bit entry point. The entry ends QEMU with the PVH status (see `exit_stub`).
//!
//! ```text
//! file offset  what
//! 0x00         ELF header (64 bytes)
//! 0x40         program headers: PT_LOAD, PT_NOTE (56 bytes each)
//! 0xB0         note: namesz 4, descsz 8, type 18, "Xen\0", entry address (8 bytes)
//! 0xC8         32-bit exit code                                 <- PVH entry
//! ```
//! The whole file is loaded at 1 MiB, so file offset N is physical address 1 MiB + N.

use super::exit_stub::Entry;

const LOAD_ADDRESS: u64 = 0x10_0000;
const EHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;
const NOTE_OFFSET: usize = EHDR_SIZE + 2 * PHDR_SIZE;
/// Xen's name with its NUL, 4 bytes, so the descriptor after it needs no padding.
const NOTE_NAME: &[u8; 4] = b"Xen\0";
/// QEMU reads the descriptor as a 64-bit address in a 64-bit ELF (as Linux writes it).
const NOTE_SIZE: usize = 12 + NOTE_NAME.len() + 8;
const CODE_OFFSET: usize = NOTE_OFFSET + NOTE_SIZE;
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const PF_X: u32 = 1;
const PF_R: u32 = 4;

pub fn image() -> Vec<u8> {
    let code = Entry::Pvh.code();
    let file_size = (CODE_OFFSET + code.len()) as u64;
    let entry = LOAD_ADDRESS + CODE_OFFSET as u64;
    let mut elf = Vec::with_capacity(file_size as usize);

    // Elf64_Ehdr: magic, ELFCLASS64, little-endian, version 1, System V ABI, padding.
    elf.extend_from_slice(&[0x7F, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    elf.extend_from_slice(&2u16.to_le_bytes()); // e_type: ET_EXEC
    elf.extend_from_slice(&62u16.to_le_bytes()); // e_machine: EM_X86_64
    elf.extend_from_slice(&1u32.to_le_bytes()); // e_version
    elf.extend_from_slice(&entry.to_le_bytes()); // e_entry (PVH loaders use the note instead)
    elf.extend_from_slice(&(EHDR_SIZE as u64).to_le_bytes()); // e_phoff
    elf.extend_from_slice(&0u64.to_le_bytes()); // e_shoff: no sections
    elf.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    for half in [EHDR_SIZE, PHDR_SIZE, 2, 0, 0, 0] {
        // e_ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx
        elf.extend_from_slice(&(half as u16).to_le_bytes());
    }

    let mut phdr = |kind: u32, flags: u32, offset: usize, size: u64, align: u64| {
        let address = LOAD_ADDRESS + offset as u64;
        elf.extend_from_slice(&kind.to_le_bytes());
        elf.extend_from_slice(&flags.to_le_bytes());
        for word in [offset as u64, address, address, size, size, align] {
            // p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_align
            elf.extend_from_slice(&word.to_le_bytes());
        }
    };
    phdr(PT_LOAD, PF_R | PF_X, 0, file_size, 0x1000);
    phdr(PT_NOTE, PF_R, NOTE_OFFSET, NOTE_SIZE as u64, 4);

    // Elf64_Nhdr: namesz, descsz, type; then the name and the descriptor.
    elf.extend_from_slice(&(NOTE_NAME.len() as u32).to_le_bytes());
    elf.extend_from_slice(&8u32.to_le_bytes());
    elf.extend_from_slice(&XEN_ELFNOTE_PHYS32_ENTRY.to_le_bytes());
    elf.extend_from_slice(NOTE_NAME);
    elf.extend_from_slice(&entry.to_le_bytes());

    elf.extend_from_slice(&code);
    elf
}

#[cfg(test)]
mod tests {
    use super::*;
    use goblin::elf::program_header::{PT_LOAD, PT_NOTE};
    use goblin::elf::Elf;

    #[test]
    fn parses_as_elf64_with_the_pvh_note() {
        let bytes = image();
        let elf = Elf::parse(&bytes).unwrap();
        assert!(elf.is_64 && elf.little_endian);
        assert_eq!(elf.header.e_machine, goblin::elf::header::EM_X86_64);
        let kinds: Vec<u32> = elf.program_headers.iter().map(|ph| ph.p_type).collect();
        assert_eq!(kinds, [PT_LOAD, PT_NOTE]);
        let load = &elf.program_headers[0];
        assert_eq!((load.p_offset, load.p_paddr, load.p_filesz), (0, LOAD_ADDRESS, bytes.len() as u64));

        let notes: Vec<_> = elf.iter_note_headers(&bytes).unwrap().map(Result::unwrap).collect();
        assert_eq!(notes.len(), 1);
        let note = &notes[0];
        // XEN_ELFNOTE_PHYS32_ENTRY in Xen's public/elfnote.h; goblin has no name for it.
        assert_eq!((note.name, note.n_type), ("Xen", 18));
        let entry = u64::from_le_bytes(note.desc.try_into().unwrap());

        // The entry address, mapped back through PT_LOAD, holds the PVH exit code.
        let offset = (entry - load.p_paddr + load.p_offset) as usize;
        let code = Entry::Pvh.code();
        assert_eq!(bytes[offset..offset + code.len()], code);
    }
}
