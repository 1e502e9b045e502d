//! The MPIDR affinity fields: how PSCI, the GIC and the VM name CPUs.

/// MPIDR_EL1 affinity fields Aff3[39:32], Aff2[23:16], Aff1[15:8], Aff0[7:0] (Arm ARM
/// D24.2.101); PSCI identifies CPUs by exactly these bits (DEN0022 §5.1.4).
pub const MPIDR_AFFINITY_MASK: u64 = 0xFF_00FF_FFFF;
