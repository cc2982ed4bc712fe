# Reset vector -> 32-bit protected mode -> 64-bit long mode -> Rust.
# Physical memory used before Rust runs (all below 1 MiB, reclaimed by Linux later):
#   0x1000-0x6fff  page tables: identity map of the low 4 GiB with 2 MiB pages, plus the
#                  top 1 GiB aliased at the top of the 64-bit space, where Rust code is linked
#   0x8000-0xffff  .data/.bss (layout.ld)      0x10000-0x1ffff  stack

.set PML4, 0x1000
.set PDPT, 0x2000           # shared by both PML4 slots: entries 0-3 low, 511 high
.set PD, 0x3000             # four pages, one per GiB
.set STACK_TOP, 0x20000
.set CODE32, 0x08
.set CODE64, 0x10           # __BOOT_CS, as Linux's 64-bit boot protocol requires
.set DATA, 0x18             # __BOOT_DS
# Control registers are written whole from their reset values (EFLAGS 0x2: interrupts off,
# direction up; CR0 0x60000010: CD, NW, ET; CR4 and EFER 0), not read and modified.
.set CR0_RESET, 0x60000010

.section .reset, "ax"
.code16
.global reset_vector
reset_vector:
    jmp real_mode_start
    .fill 16 - (. - reset_vector), 1, 0xf4   # pad to the 4 GiB boundary with hlt

.section .boot, "ax"
.code16
real_mode_start:
    rdtsc                        # TSC at the first instruction, kept in esi:ebp for the timeline
    movl %eax, %ebp
    movl %edx, %esi
    lgdtl %cs:(gdt_pointer - 0xffff0000)
    lmsw %cs:(protection_enable - 0xffff0000)   # CR0.PE, in one instruction
    ljmpl $CODE32, $protected_mode_start

.code32
protected_mode_start:
    movw $DATA, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss                # DS, ES, SS: also what Linux's 64-bit entry requires

    # Only the entries used are written, whole (RAM keeps its contents across a guest reset):
    # stale ones elsewhere map addresses the firmware never touches, and Linux builds its own
    # tables. Under TCG each `rep` step costs about as much as a loop iteration, so no page
    # is cleared. The PML4 and PDPT entries are copied from the ROM templates below, whole
    # 64-bit entries through SSE registers (so CR4 enables SSE first): fewer instructions than
    # writing each entry's halves.
    movl $((1 << 5) | (1 << 9) | (1 << 10)), %eax   # PAE, OSFXSR, OSXMMEXCPT
    movl %eax, %cr4
    movdqa pdpt_entries, %xmm0
    movdqa pdpt_entries + 16, %xmm1
    movdqa %xmm0, PDPT
    movdqa %xmm1, PDPT + 16
    movhps %xmm1, PDPT + 511 * 8 # the top GiB, as entry 3
    movq pml4_entry, %xmm0
    movq %xmm0, PML4
    movq %xmm0, PML4 + 511 * 8
    xorl %edx, %edx
    # Present, writable, large page. The jump makes the loop's first pass start a block at its
    # head, as every later pass does, so TCG translates its body once, not twice. The loop ends
    # when the address carries past 4 GiB, so it needs no compare.
    movl $PD, %edi
    movl $0x83, %eax
    jmp 1f
1:  movl %eax, (%edi)
    movl %edx, 4(%edi)
    addl $8, %edi
    addl $0x200000, %eax
    jnc 1b

    movl $PML4, %eax
    movl %eax, %cr3
    movl $0xc0000080, %ecx       # EFER.LME (EDX is still 0 from the loop above)
    movl $(1 << 8), %eax
    wrmsr
    # PG, MP and PE; EM stays off: the prebuilt core uses SSE.
    movl $(CR0_RESET | (1 << 31) | (1 << 1) | 1), %eax
    movl %eax, %cr0
    ljmpl $CODE64, $long_mode_start

.code64
long_mode_start:
    movl $STACK_TOP, %esp
    # Clear .bss (below 4 GiB; its size from layout.ld). There is no .data to copy from ROM
    # (layout.ld asserts it).
    movl $_bss_start, %edi
    movl $_bss_size, %ecx
    xorl %eax, %eax
    rep stosb
    movl %ebp, %edi
    shlq $32, %rsi
    orq %rsi, %rdi               # firmware_main(reset_tsc), at its high alias
    movabsq $firmware_main, %rax
    call *%rax
2:  hlt
    jmp 2b

# Descriptors are pre-marked accessed: the ROM is read-only, the CPU must not need to write them.
.balign 16
gdt:
    .quad 0
    .quad 0x00cf9b000000ffff    # 0x08: 32-bit code, flat
    .quad 0x00af9b000000ffff    # 0x10: 64-bit code
    .quad 0x00cf93000000ffff    # 0x18: data, flat
gdt_end:
gdt_pointer:
    .word gdt_end - gdt - 1
    .long gdt
protection_enable:
    .word 1

.balign 16
pdpt_entries:                   # one per GiB of the low 4 GiB
    .quad PD | 3, PD + 0x1000 | 3, PD + 0x2000 | 3, PD + 0x3000 | 3
pml4_entry:                     # both PML4 slots, low and high, share the PDPT
    .quad PDPT | 3

# pvh_compat_mode(entry: edi, start_info: esi), reached by arch::enter_pvh's far return to
# CODE32: leaves long mode for the PVH ABI's 32-bit protected mode with paging off and
# EBX = start_info. Runs here, at its physical address, because paging is switched off under it.
# DS, ES and SS still hold the flat DATA segment loaded by protected_mode_start: nothing
# since has reloaded them.
.section .boot, "ax"
.code32
.global pvh_compat_mode
pvh_compat_mode:
    movl %esi, %ebx
    movl $(CR0_RESET | (1 << 1) | 1), %eax   # paging off, which also leaves long mode
    movl %eax, %cr0
    movl $0xc0000080, %ecx       # EFER.LME off: EFER back to 0
    xorl %eax, %eax
    xorl %edx, %edx
    wrmsr
    movl %eax, %cr4
    jmp *%edi
