// EL2 exception vectors (Arm ARM D1.10.2) and the way into and out of a guest.
//
// cairn_run_guest(frame) enters the guest from a TrapFrame the run loop owns and returns to
// the loop when the guest next exits, as a function call returns (the shape of KVM's
// __guest_enter/__guest_exit): it saves the loop's callee-saved registers and stack pointer,
// points SP_EL2 just past the frame and returns to the guest from it. An exception from the
// guest therefore builds its TrapFrame exactly over the loop's frame; the vector saves the
// guest's registers there, switches back to the loop's stack and returns the exception kind.
// Cairn itself never uses FP/SIMD (softfloat target), so the guest's FP state needs no
// saving.

.equ FRAME_SIZE, {FRAME_SIZE}
.equ KIND_SYNC, 0
.equ KIND_IRQ, 1
.equ KIND_FIQ, 2
.equ KIND_SERROR, 3
// TrapFrame.host_sp: where cairn_run_guest keeps the loop's stack pointer.
.equ HOST_SP, {HOST_SP}
// The loop's callee-saved registers x19-x30 (AAPCS64 §6.1.1), pushed below its stack.
.equ CALLEE_SAVED_SIZE, 16 * 6

.macro VECTOR handler, kind
    .balign 0x80
    sub     sp, sp, #FRAME_SIZE
    stp     x0, x1, [sp, #0]
    mov     x1, #\kind
    b       \handler
.endm

    .section .text.vectors, "ax"
    .balign 2048
    .global cairn_el2_vectors
cairn_el2_vectors:
    // Current EL with SP_EL0: Cairn never runs on SP_EL0.
    VECTOR  hyp_exception, KIND_SYNC
    VECTOR  hyp_exception, KIND_IRQ
    VECTOR  hyp_exception, KIND_FIQ
    VECTOR  hyp_exception, KIND_SERROR
    // Current EL with SP_EL2: a fault in Cairn itself, or an interrupt taken while idle.
    VECTOR  hyp_exception, KIND_SYNC
    VECTOR  hyp_exception, KIND_IRQ
    VECTOR  hyp_exception, KIND_FIQ
    VECTOR  hyp_exception, KIND_SERROR
    // Lower EL, AArch64: the guest. Synchronous exceptions try the hypercall fast path.
    VECTOR  guest_sync, KIND_SYNC
    VECTOR  guest_exception, KIND_IRQ
    VECTOR  guest_exception, KIND_FIQ
    VECTOR  guest_exception, KIND_SERROR
    // Lower EL, AArch32: guests run AArch64 only (HCR_EL2.RW = 1).
    VECTOR  guest_exception, KIND_SYNC
    VECTOR  guest_exception, KIND_IRQ
    VECTOR  guest_exception, KIND_FIQ
    VECTOR  guest_exception, KIND_SERROR

// Saves x2-x30, ELR_EL2 and SPSR_EL2 (x0/x1 are already saved by the vector).
.macro SAVE_REST
    stp     x2, x3, [sp, #16 * 1]
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
    mrs     x21, elr_el2
    mrs     x22, spsr_el2
    stp     x30, x21, [sp, #16 * 15]
    str     x22, [sp, #16 * 16]
.endm

// The hypercall fast path (src/arch/aarch64/fastpath.rs): an HVC, or an SMC with
// immediate 0, whose W0 is in this CPU's table is answered from the table, saving only
// x0-x3. ESR_EL2.EC (Arm ARM D23.2.41): 0x16 = HVC from AArch64, 0x17 = SMC from AArch64
// (its ISS holds the immediate; ELR_EL2 points at the SMC itself, so step over it).
.equ ESR_EC_SHIFT, 26
.equ EC_HVC64, 0x16
.equ EC_SMC64, 0x17
.equ ESR_IMM16_MASK, 0xffff
.equ ANSWER_SIZE, {ANSWER_SIZE}
.equ CPU_BLOCK_SIZE, {CPU_BLOCK_SIZE}
.equ FAST_CALLS, {FAST_CALLS}
.equ A64_INSTRUCTION, 4
guest_sync:
    mrs     x1, esr_el2
    lsr     x1, x1, #ESR_EC_SHIFT
    cmp     x1, #EC_HVC64
    b.eq    1f
    cmp     x1, #EC_SMC64
    b.ne    other_sync                  // not a call: x0 is still the guest's
    mrs     x1, esr_el2
    tst     x1, #ESR_IMM16_MASK
    b.ne    other_sync
1:
    stp     x2, x3, [sp, #16 * 1]
    mrs     x3, tpidr_el2               // this CPU's logical number
    mov     x1, #CPU_BLOCK_SIZE
    adrp    x2, {FAST_TABLE}
    add     x2, x2, :lo12:{FAST_TABLE}
    madd    x3, x3, x1, x2              // this CPU's answers
    mov     x1, #FAST_CALLS
2:
    ldp     w2, w0, [x3]                // fid, count (x0 is reloaded below either way)
    cbz     w0, 3f
    ldr     w0, [sp]                    // the caller's W0
    cmp     w0, w2
    b.eq    fast_answer
3:
    add     x3, x3, #ANSWER_SIZE
    subs    x1, x1, #1
    b.ne    2b
    ldr     x0, [sp]
    ldp     x2, x3, [sp, #16 * 1]
other_sync:
    mov     x1, #KIND_SYNC
    b       guest_exception

// x3 = the matching answer. Writes its `count` result registers; the others keep the
// caller's values, as the full path's one write-back does.
fast_answer:
    mrs     x1, esr_el2
    lsr     x1, x1, #ESR_EC_SHIFT
    cmp     x1, #EC_SMC64
    b.ne    4f
    mrs     x1, elr_el2
    add     x1, x1, #A64_INSTRUCTION
    msr     elr_el2, x1
4:
    ldr     w2, [x3, #4]                // count, 1-4
    ldr     x0, [x3, #8]
    ldr     x1, [sp, #8]
    cmp     w2, #2
    b.lo    5f
    ldr     x1, [x3, #16]
    cmp     w2, #3
    b.lo    5f
    b.eq    6f
    ldp     x2, x3, [x3, #24]           // count 4: x2 and x3 answered
    add     sp, sp, #FRAME_SIZE
    eret
6:
    ldr     x2, [x3, #24]               // count 3: x2 answered, x3 the caller's
    ldr     x3, [sp, #24]
    add     sp, sp, #FRAME_SIZE
    eret
5:
    ldp     x2, x3, [sp, #16 * 1]
    add     sp, sp, #FRAME_SIZE
    eret

guest_exception:
    SAVE_REST
    // Back on the loop's stack, as if cairn_run_guest returned the exception kind.
    ldr     x2, [sp, #HOST_SP]
    mov     x0, x1
    mov     sp, x2
    ldp     x21, x22, [sp, #16 * 1]
    ldp     x23, x24, [sp, #16 * 2]
    ldp     x25, x26, [sp, #16 * 3]
    ldp     x27, x28, [sp, #16 * 4]
    ldp     x29, x30, [sp, #16 * 5]
    ldp     x19, x20, [sp], #CALLEE_SAVED_SIZE
    ret

    .global exception_return
exception_return:
    ldr     x22, [sp, #16 * 16]
    ldp     x30, x21, [sp, #16 * 15]
    msr     elr_el2, x21
    msr     spsr_el2, x22
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
    add     sp, sp, #FRAME_SIZE
    eret

hyp_exception:
    SAVE_REST
    mov     x0, sp
    bl      cairn_hyp_exception    // reports the fault and stops the machine, but
    b       exception_return       // returns for the semihosting probe's undefined HLT

// cairn_run_guest(frame: *mut TrapFrame) -> u64: enters the guest from `frame` (16-byte
// aligned, on the caller's stack) and returns the kind of the exception that ended its run,
// with the guest's registers saved back into `frame`.
    .global cairn_run_guest
cairn_run_guest:
    stp     x19, x20, [sp, #-CALLEE_SAVED_SIZE]!
    stp     x21, x22, [sp, #16 * 1]
    stp     x23, x24, [sp, #16 * 2]
    stp     x25, x26, [sp, #16 * 3]
    stp     x27, x28, [sp, #16 * 4]
    stp     x29, x30, [sp, #16 * 5]
    mov     x1, sp
    str     x1, [x0, #HOST_SP]
    mov     sp, x0
    b       exception_return
