// Cairn's entry point: the arm64 Image header, the exception-level check, self-relocation,
// BSS clearing and per-CPU stacks, then Rust. Assembled through global_asm! in
// src/arch/aarch64/boot.rs, which supplies the operands in braces.

// booting.rst §4: flags = little-endian (bit 0 = 0), 4 KiB pages (bits 2:1 = 1),
// placement anywhere in RAM (bit 3 = 1).
.equ IMAGE_FLAGS, 0xA
.equ R_AARCH64_RELATIVE, 1027
// SPSR: DAIF masked, EL2h (Arm ARM C5.2.19).
.equ SPSR_EL2H_DAIF_MASKED, 0x3C9
// SCR_EL3: NS (0), RES1 (5:4), HCE (8), RW (10): lower ELs non-secure AArch64, HVC on.
.equ SCR_EL3_FOR_EL2, 0x531

    .section .text.head, "ax"
    .global _start
_start:
    b       primary_entry               // code0
    .long   0                           // code1
    .quad   0                           // text_offset
    .quad   {LOAD_WINDOW}               // image_size: see LOAD_WINDOW in boot.rs
    .quad   IMAGE_FLAGS
    .quad   0, 0, 0                     // res2-res4
    .ascii  "ARM\x64"                   // magic
    .long   0                           // res5: no PE/COFF header

    .section .text.boot, "ax"
primary_entry:
    mov     x19, x0                     // the device tree, per booting.rst
    mrs     x20, CurrentEL
    lsr     x20, x20, #2
    cmp     x20, #3
    b.ne    1f
    // Entered at EL3 (no firmware below us): run Cairn at EL2 in the non-secure world.
    mov     x0, #SCR_EL3_FOR_EL2
    msr     scr_el3, x0
    mov     x0, #SPSR_EL2H_DAIF_MASKED
    msr     spsr_el3, x0
    adr     x0, 1f
    msr     elr_el3, x0
    mov     x20, #2
    eret
1:
    bl      apply_relocations
    bl      clear_bss
    mov     x0, #0
    bl      set_cpu_stack
    cmp     x20, #2
    b.ne    2f
    adrp    x0, {VECTORS}
    add     x0, x0, :lo12:{VECTORS}
    msr     vbar_el2, x0
    isb
    mov     x0, x19
    bl      cairn_primary_main
    b       park
2:
    // Entered below EL2: Cairn cannot run. Say so on the console and power off.
    mov     x0, x19
    bl      cairn_refuse_low_el
    b       park

// Secondary CPUs, started by the firmware's PSCI CPU_ON with context_id = CPU index.
    .global secondary_entry
secondary_entry:
    mov     x19, x0
    bl      set_cpu_stack
    adrp    x0, {VECTORS}
    add     x0, x0, :lo12:{VECTORS}
    msr     vbar_el2, x0
    isb
    mov     x0, x19
    bl      cairn_secondary_main
    b       park

// Secondary CPUs released from a spin table (enable-method "spin-table", the Raspberry
// Pi's firmware): they arrive with no context id, so each finds its logical number by
// looking its MPIDR affinity up in the table the boot CPU wrote and cleaned to memory.
    .global spin_table_entry
spin_table_entry:
    mrs     x1, mpidr_el1
    ubfx    x2, x1, #32, #8             // Aff3
    and     x1, x1, #0xffffff           // Aff2..Aff0
    orr     x1, x1, x2, lsl #32
    adrp    x3, {SPIN_TABLE_MPIDRS}
    add     x3, x3, :lo12:{SPIN_TABLE_MPIDRS}
    mov     x0, #0
1:
    ldr     x4, [x3, x0, lsl #3]
    cmp     x4, x1
    b.eq    secondary_entry
    add     x0, x0, #1
    cmp     x0, #{MAX_CPUS}
    b.lo    1b
    b       park

park:
    wfe
    b       park

// sp = top of the stack of CPU x0. Clobbers x1-x2.
set_cpu_stack:
    adrp    x1, {STACKS}
    add     x1, x1, :lo12:{STACKS}
    add     x2, x0, #1
    mov     x0, #{STACK_SIZE}
    madd    x1, x2, x0, x1
    mov     sp, x1
    ret

// Applies the image's R_AARCH64_RELATIVE relocations against the address it runs at
// (it is linked at 0). Runs with the MMU off, before anything reads a pointer from data.
apply_relocations:
    adrp    x0, __image_start
    add     x0, x0, :lo12:__image_start
    adrp    x1, __rela_start
    add     x1, x1, :lo12:__rela_start
    adrp    x2, __rela_end
    add     x2, x2, :lo12:__rela_end
3:  cmp     x1, x2
    b.hs    5f
    ldp     x3, x4, [x1], #16           // r_offset, r_info
    ldr     x5, [x1], #8                // r_addend
    cmp     w4, #R_AARCH64_RELATIVE
    b.ne    3b
    add     x5, x5, x0
    str     x5, [x0, x3]
    b       3b
5:  ret

clear_bss:
    adrp    x0, __bss_start
    add     x0, x0, :lo12:__bss_start
    adrp    x1, __bss_end
    add     x1, x1, :lo12:__bss_end
6:  cmp     x0, x1
    b.hs    7f
    stp     xzr, xzr, [x0], #16
    b       6b
7:  ret
