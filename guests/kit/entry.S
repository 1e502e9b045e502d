// Entry of a bare-metal test guest: arm64 Image header, self-relocation, BSS, stack,
// EL1 vectors, then the guest's main. Entered at EL1h with the MMU off, x0 = device tree.
// Secondary CPUs enter at kit_secondary_entry (PSCI CPU_ON), x0 = logical CPU index.
// TPIDR_EL1 holds each CPU's logical index (0 for the boot CPU).

.equ R_AARCH64_RELATIVE, 1027

    .section .text.head, "ax"
    .global _start
_start:
    b       1f
    .long   0
    .quad   0                       // text_offset
    .quad   __guest_size            // image_size, from guest.ld
    .quad   0xA                     // LE, 4 KiB pages, anywhere
    .quad   0, 0, 0
    .ascii  "ARM\x64"
    .long   0

    .section .text.boot, "ax"
1:  mov     x19, x0
    adrp    x0, __guest_start
    add     x0, x0, :lo12:__guest_start
    adrp    x1, __rela_start
    add     x1, x1, :lo12:__rela_start
    adrp    x2, __rela_end
    add     x2, x2, :lo12:__rela_end
2:  cmp     x1, x2
    b.hs    3f
    ldp     x3, x4, [x1], #16
    ldr     x5, [x1], #8
    cmp     w4, #R_AARCH64_RELATIVE
    b.ne    2b
    add     x5, x5, x0
    str     x5, [x0, x3]
    b       2b
3:  adrp    x0, __bss_start
    add     x0, x0, :lo12:__bss_start
    adrp    x1, __bss_end
    add     x1, x1, :lo12:__bss_end
4:  cmp     x0, x1
    b.hs    5f
    stp     xzr, xzr, [x0], #16
    b       4b
5:  adrp    x0, {STACK}
    add     x0, x0, :lo12:{STACK}
    add     x0, x0, #{STACK_SIZE}
    mov     sp, x0
    msr     tpidr_el1, xzr
    adrp    x0, guest_vectors
    add     x0, x0, :lo12:guest_vectors
    msr     vbar_el1, x0
    isb
    mov     x0, x19
    bl      {START}
6:  wfe
    b       6b

// A secondary CPU, started by smp::start through PSCI CPU_ON: EL1h, MMU off, DAIF masked,
// x0 = context id = logical index (1..MAX_CPUS-1). The boot CPU has already relocated
// the image and cleared BSS. Index n runs on SECONDARY_STACKS[n - 1], whose top is
// SECONDARY_STACKS + n * SECONDARY_STACK_SIZE. Any other index parks.
    .global kit_secondary_entry
kit_secondary_entry:
    cbz     x0, 8f
    cmp     x0, #{MAX_CPUS}
    b.hs    8f
    adrp    x1, {SECONDARY_STACKS}
    add     x1, x1, :lo12:{SECONDARY_STACKS}
    mov     x2, #{SECONDARY_STACK_SIZE}
    madd    x1, x0, x2, x1
    mov     sp, x1
    msr     tpidr_el1, x0
    adrp    x1, guest_vectors
    add     x1, x1, :lo12:guest_vectors
    msr     vbar_el1, x1
    isb
    bl      {SECONDARY_START}
8:  wfe
    b       8b

// EL1 vectors: save x0-x30, ELR, SPSR; call the kit's handler; return from the frame.
.macro VEC kind
    .balign 0x80
    sub     sp, sp, #272
    stp     x0, x1, [sp, #0]
    mov     x1, #\kind
    b       7f
.endm
    .section .text.vectors, "ax"
    .balign 2048
guest_vectors:
    VEC 0
    VEC 1
    VEC 2
    VEC 3
    VEC 0
    VEC 1
    VEC 2
    VEC 3
    VEC 0
    VEC 1
    VEC 2
    VEC 3
    VEC 0
    VEC 1
    VEC 2
    VEC 3
7:  stp     x2, x3, [sp, #16 * 1]
    stp     x4, x5, [sp, #16 * 2]
    stp     x6, x7, [sp, #16 * 3]
    stp     x8, x9, [sp, #16 * 4]
    stp     x10, x11, [sp, #16 * 5]
    stp     x12, x13, [sp, #16 * 6]
    stp     x14, x15, [sp, #16 * 7]
    stp     x16, x17, [sp, #16 * 8]
    stp     x18, x19, [sp, #16 * 9]
    stp     x20, x21, [sp, #16 * 10]
    stp     x22, x23, [sp, #16 * 11]
    stp     x24, x25, [sp, #16 * 12]
    stp     x26, x27, [sp, #16 * 13]
    stp     x28, x29, [sp, #16 * 14]
    mrs     x21, elr_el1
    mrs     x22, spsr_el1
    stp     x30, x21, [sp, #16 * 15]
    str     x22, [sp, #16 * 16]
    mov     x0, sp
    bl      {HANDLER}
    ldr     x22, [sp, #16 * 16]
    ldp     x30, x21, [sp, #16 * 15]
    msr     elr_el1, x21
    msr     spsr_el1, x22
    ldp     x28, x29, [sp, #16 * 14]
    ldp     x26, x27, [sp, #16 * 13]
    ldp     x24, x25, [sp, #16 * 12]
    ldp     x22, x23, [sp, #16 * 11]
    ldp     x20, x21, [sp, #16 * 10]
    ldp     x18, x19, [sp, #16 * 9]
    ldp     x16, x17, [sp, #16 * 8]
    ldp     x14, x15, [sp, #16 * 7]
    ldp     x12, x13, [sp, #16 * 6]
    ldp     x10, x11, [sp, #16 * 5]
    ldp     x8, x9, [sp, #16 * 4]
    ldp     x6, x7, [sp, #16 * 3]
    ldp     x4, x5, [sp, #16 * 2]
    ldp     x2, x3, [sp, #16 * 1]
    ldp     x0, x1, [sp, #16 * 0]
    add     sp, sp, #272
    eret
