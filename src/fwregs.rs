//! Firmware pseudo-registers: the per-vCPU GET/SET interface through which a VMM-like
//! caller (and save/restore or migration) reads and pins the "firmware" a guest sees.
//!
//! Cairn copies KVM's interface, register IDs, encodings and errors included
//! (Linux `Documentation/virt/kvm/arm/fw-pseudo-registers.rst`, `arch/arm64/kvm/hypercalls.c`;
//! summarised in `guest-firmware-interfaces.md` §3.1–3.3, "the digest" below):
//!
//! | Register | Scope | Holds |
//! |---|---|---|
//! | [`reg::PSCI_VERSION`] | VM-wide, read through a vCPU | the PSCI version the guest sees |
//! | [`reg::SMCCC_ARCH_WORKAROUND_1`]/`_2`/`_3` | host | the mitigation level the host offers |
//! | [`reg::STD_BMAP`], [`reg::STD_HYP_BMAP`], [`reg::VENDOR_HYP_BMAP`] | VM-wide | which hypercall services are on |
//!
//! The state lives in [`VmFirmwareState`] (one per VM); [`VcpuFirmwareRegs`] is the view one
//! vCPU gives onto it, carrying that vCPU's [`PsciFeature`] and the [`HostWorkarounds`] the
//! real firmware reported. Writes through any vCPU change the VM, as in KVM.
//!
//! Every value is 64 bits wide. The access size is part of the register ID (KVM's
//! `KVM_REG_SIZE` field, bits 55:52), so `get`/`set` take only the ID and a `u64`: an ID with
//! any other size is simply not a register here and gives [`Error::NoEntry`], as KVM's
//! `kvm_arm_set_fw_reg` answers ENOENT for a wrong size.
//!
//! Pure logic with no hardware access; tested on the host.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::smccc::psci::{self, Version};

/// Register IDs (KVM `arch/arm64/include/uapi/asm/kvm.h`; digest §3.2):
/// `KVM_REG_ARM64 | KVM_REG_SIZE_U64 | coproc << 16 | index`.
pub mod reg {
    /// The architecture field of a KVM ONE_REG ID: arm64.
    pub const KVM_REG_ARM64: u64 = 0x6000_0000_0000_0000;
    /// The size field (bits 55:52) for a 64-bit register.
    pub const KVM_REG_SIZE_U64: u64 = 0x0030_0000_0000_0000;
    /// Where the coprocessor number sits in an arm64 register ID.
    pub const KVM_REG_ARM_COPROC_SHIFT: u32 = 16;
    /// Coprocessor of the firmware registers (PSCI version, workarounds).
    pub const KVM_REG_ARM_FW: u64 = 0x0014 << KVM_REG_ARM_COPROC_SHIFT;
    /// Coprocessor of the hypercall-service feature bitmaps.
    pub const KVM_REG_ARM_FW_FEAT_BMAP: u64 = 0x0016 << KVM_REG_ARM_COPROC_SHIFT;

    /// A 64-bit firmware register ID from its coprocessor field and index.
    pub const fn fw_reg(coproc: u64, index: u64) -> u64 {
        KVM_REG_ARM64 | KVM_REG_SIZE_U64 | coproc | index
    }

    /// `KVM_REG_ARM_PSCI_VERSION`, `0x6030_0000_0014_0000`.
    pub const PSCI_VERSION: u64 = fw_reg(KVM_REG_ARM_FW, 0);
    /// `KVM_REG_ARM_SMCCC_ARCH_WORKAROUND_1` (Spectre-v2, CVE-2017-5715).
    pub const SMCCC_ARCH_WORKAROUND_1: u64 = fw_reg(KVM_REG_ARM_FW, 1);
    /// `KVM_REG_ARM_SMCCC_ARCH_WORKAROUND_2` (SSBD, CVE-2018-3639).
    pub const SMCCC_ARCH_WORKAROUND_2: u64 = fw_reg(KVM_REG_ARM_FW, 2);
    /// `KVM_REG_ARM_SMCCC_ARCH_WORKAROUND_3` (Spectre-BHB, CVE-2022-23960).
    pub const SMCCC_ARCH_WORKAROUND_3: u64 = fw_reg(KVM_REG_ARM_FW, 3);
    /// `KVM_REG_ARM_STD_BMAP`: Arm Standard Secure services, `0x6030_0000_0016_0000`.
    pub const STD_BMAP: u64 = fw_reg(KVM_REG_ARM_FW_FEAT_BMAP, 0);
    /// `KVM_REG_ARM_STD_HYP_BMAP`: Arm Standard Hypervisor services.
    pub const STD_HYP_BMAP: u64 = fw_reg(KVM_REG_ARM_FW_FEAT_BMAP, 1);
    /// `KVM_REG_ARM_VENDOR_HYP_BMAP`: Vendor Hypervisor services 0-63.
    pub const VENDOR_HYP_BMAP: u64 = fw_reg(KVM_REG_ARM_FW_FEAT_BMAP, 2);
}

/// Bits of the feature-bitmap registers (fw-pseudo-registers.rst, "Bitmap Feature Firmware
/// Registers"), and the subset Cairn implements.
pub mod bmap {
    /// STD_BMAP bit 0: TRNG 1.0 (Arm DEN0098).
    pub const STD_BIT_TRNG_V1_0: u64 = 1 << 0;
    /// STD_HYP_BMAP bit 0: paravirtualised time (Arm DEN0057A).
    pub const STD_HYP_BIT_PV_TIME: u64 = 1 << 0;
    /// VENDOR_HYP_BMAP bit 0: the vendor-hypervisor general queries (call UID, revision) and
    /// the vendor FEATURES call.
    pub const VENDOR_HYP_BIT_FUNC_FEAT: u64 = 1 << 0;
    /// VENDOR_HYP_BMAP bit 1: KVM's PTP (host clock) service.
    pub const VENDOR_HYP_BIT_PTP: u64 = 1 << 1;

    /// STD_BMAP bits Cairn implements: TRNG.
    pub const STD_SUPPORTED: u64 = STD_BIT_TRNG_V1_0;
    /// STD_HYP_BMAP bits Cairn implements: none. Cairn has no PV time, so bit 0 is refused.
    pub const STD_HYP_SUPPORTED: u64 = 0;
    /// VENDOR_HYP_BMAP bits Cairn implements: the UID/revision/FEATURES calls, not PTP.
    pub const VENDOR_HYP_SUPPORTED: u64 = VENDOR_HYP_BIT_FUNC_FEAT;
}

/// Bits 3:0 of a workaround register hold its level (KVM `KVM_REG_FEATURE_LEVEL_MASK`).
pub const WA_LEVEL_MASK: u64 = 0xF;
/// WORKAROUND_2 bit 4: the dynamic mitigation is active for this vCPU; only valid together
/// with the AVAIL level (`KVM_REG_ARM_SMCCC_ARCH_WORKAROUND_2_ENABLED`).
pub const WA2_ENABLED: u64 = 1 << 4;

/// The errno values KVM returns for these registers (fw-pseudo-registers.rst, "Errors").
pub mod errno {
    pub const ENOENT: i32 = 2;
    pub const EBUSY: i32 = 16;
    pub const EINVAL: i32 = 22;
}

/// Why a register access failed, with KVM's meaning of each errno.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// ENOENT: not a firmware register of Cairn's, including a known register named with a
    /// size other than 64 bits.
    NoEntry,
    /// EINVAL: a value Cairn cannot honour: an unimplemented PSCI version, a version that does
    /// not match the vCPU's [`PsciFeature`], a bitmap bit Cairn does not implement, or a
    /// workaround level better than the host's.
    Invalid,
    /// EBUSY: changing a bitmap, or the PSCI version, after a vCPU of the VM has run.
    Busy,
}

impl Error {
    /// The (positive) errno KVM would return for this error.
    pub const fn errno(self) -> i32 {
        match self {
            Error::NoEntry => errno::ENOENT,
            Error::Invalid => errno::EINVAL,
            Error::Busy => errno::EBUSY,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::NoEntry => "no such firmware register",
            Error::Invalid => "value not supported by this VM or host",
            Error::Busy => "VM configuration is frozen once a vCPU has run",
        })
    }
}

pub type Result<T> = core::result::Result<T, Error>;

/// The PSCI versions Cairn implements, with the spelling the `psci=` bootarg uses.
/// 1.2 and 1.3, which KVM also accepts, are not here: Cairn does not implement them
/// (1.3 adds SYSTEM_OFF2, digest §2.1), so writing them gives [`Error::Invalid`].
pub const SUPPORTED_PSCI_VERSIONS: [(&str, Version); 4] =
    [("0.1", Version::V0_1), ("0.2", Version::V0_2), ("1.0", Version::V1_0), ("1.1", Version::V1_1)];

fn is_supported(version: Version) -> bool {
    SUPPORTED_PSCI_VERSIONS.iter().any(|&(_, v)| v == version)
}

/// The supported version whose PSCI_VERSION encoding is exactly `value`.
fn decode_version(value: u64) -> Option<Version> {
    SUPPORTED_PSCI_VERSIONS.iter().map(|&(_, v)| v).find(|v| u64::from(v.encode()) == value)
}

/// How a vCPU was created, as KVM's `KVM_ARM_VCPU_PSCI_0_2` feature bit (digest §3.1;
/// fw-pseudo-registers.rst: PSCI_VERSION "only valid if the vcpu has the
/// KVM_ARM_VCPU_PSCI_0_2 feature set").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsciFeature {
    /// Created without PSCI_0_2: the vCPU sees PSCI 0.1 and its PSCI_VERSION register
    /// accepts only 0.1.
    V0_1Only,
    /// Created with PSCI_0_2: the vCPU sees the VM's version, which may be set to 0.2, 1.0
    /// or 1.1 and never to 0.1.
    V0_2Plus,
}

impl PsciFeature {
    /// The flavour a vCPU needs to see `version`: 0.1-only for 0.1, 0.2+ otherwise. All
    /// vCPUs of one VM are meant to share it.
    pub fn for_version(version: Version) -> Self {
        if version == Version::V0_1 {
            PsciFeature::V0_1Only
        } else {
            PsciFeature::V0_2Plus
        }
    }

    /// Whether a vCPU of this flavour may be given `version` (KVM `kvm_arm_set_fw_reg`).
    fn allows(self, version: Version) -> bool {
        match self {
            PsciFeature::V0_1Only => version == Version::V0_1,
            PsciFeature::V0_2Plus => version >= Version::V0_2,
        }
    }
}

/// A WORKAROUND_1 or WORKAROUND_3 level (digest §3.2). The discriminants are the register
/// encoding and run in order of protection: NOT_AVAIL < AVAIL < NOT_REQUIRED.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum WaLevel {
    /// No firmware mitigation is offered; the guest's status is unknown (vulnerable).
    NotAvail = 0,
    /// The workaround call is available and needed.
    Avail = 1,
    /// The call is available but not needed: the PE is unaffected or always mitigated.
    NotRequired = 2,
}

impl WaLevel {
    pub const fn encode(self) -> u64 {
        self as u64
    }

    /// The level a register value names, or None for anything else (including any bit
    /// outside [`WA_LEVEL_MASK`]).
    pub fn decode(value: u64) -> Option<Self> {
        [WaLevel::NotAvail, WaLevel::Avail, WaLevel::NotRequired].into_iter().find(|l| l.encode() == value)
    }
}

/// A WORKAROUND_2 (SSBD) level (digest §3.2). The discriminants are the register encoding;
/// the protection order is given by [`Wa2Level::protection`], since NOT_AVAIL and UNKNOWN
/// rank equal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wa2Level {
    /// No firmware mitigation is offered.
    NotAvail = 0,
    /// The state is unknown; no firmware mitigation is offered either.
    Unknown = 1,
    /// A dynamic mitigation is available, which a vCPU can toggle ([`WA2_ENABLED`]).
    Avail = 2,
    /// The mitigation is always active, or not needed.
    NotRequired = 3,
}

impl Wa2Level {
    pub const fn encode(self) -> u64 {
        self as u64
    }

    /// The level in bits 3:0 of a register value, or None for an undefined level.
    pub fn decode(level: u64) -> Option<Self> {
        [Wa2Level::NotAvail, Wa2Level::Unknown, Wa2Level::Avail, Wa2Level::NotRequired]
            .into_iter()
            .find(|l| l.encode() == level)
    }

    /// Rank in the protection order NOT_AVAIL = UNKNOWN < AVAIL < NOT_REQUIRED. This is KVM's
    /// order: it narrows {NOT_AVAIL, UNKNOWN} to one level before comparing (hypercalls.c,
    /// "Map all the possible incoming states to the only two we really want to deal with").
    pub const fn protection(self) -> u8 {
        match self {
            Wa2Level::NotAvail | Wa2Level::Unknown => 0,
            Wa2Level::Avail => 1,
            Wa2Level::NotRequired => 2,
        }
    }
}

/// What the host can offer for each Spectre workaround, filled in by Cairn from what the real
/// firmware reported through SMCCC_ARCH_FEATURES. These are the values the workaround
/// registers read back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostWorkarounds {
    pub wa1: WaLevel,
    pub wa2: Wa2Level,
    pub wa3: WaLevel,
}

impl HostWorkarounds {
    /// The levels the real firmware's SMCCC_ARCH_FEATURES answers give (DEN0028 §7.5-§7.7):
    /// 0 = the call is implemented and needed (AVAIL); 1 = implemented but not needed on
    /// this PE (NOT_REQUIRED); -2 for WORKAROUND_2 = not required either; anything else =
    /// no mitigation offered (NOT_AVAIL; UNKNOWN for WORKAROUND_2).
    pub fn from_arch_features(feature: impl Fn(u32) -> i64) -> Self {
        use crate::smccc::{SMCCC_ARCH_WORKAROUND_1, SMCCC_ARCH_WORKAROUND_2, SMCCC_ARCH_WORKAROUND_3};
        let level = |fid| match feature(fid) {
            0 => WaLevel::Avail,
            1 => WaLevel::NotRequired,
            _ => WaLevel::NotAvail,
        };
        let wa2 = match feature(SMCCC_ARCH_WORKAROUND_2) {
            0 => Wa2Level::Avail,
            1 | -2 => Wa2Level::NotRequired,
            _ => Wa2Level::Unknown,
        };
        HostWorkarounds { wa1: level(SMCCC_ARCH_WORKAROUND_1), wa2, wa3: level(SMCCC_ARCH_WORKAROUND_3) }
    }
}

/// The VM-wide firmware configuration behind the pseudo-registers (digest §3.2: the PSCI
/// version and the bitmaps are per VM "even though [they are] read through a vCPU").
///
/// Invariants kept by every constructor and setter: the PSCI version is one of
/// [`SUPPORTED_PSCI_VERSIONS`], and each bitmap holds only bits Cairn implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmFirmwareState {
    psci_version: Version,
    std_bmap: u64,
    std_hyp_bmap: u64,
    vendor_hyp_bmap: u64,
    has_run: bool,
}

impl Default for VmFirmwareState {
    /// [`psci::DEFAULT_VERSION`] and every service Cairn implements switched on: KVM's
    /// bitmaps likewise "are set with the upper limit of the features that are supported".
    fn default() -> Self {
        VmFirmwareState {
            psci_version: psci::DEFAULT_VERSION,
            std_bmap: bmap::STD_SUPPORTED,
            std_hyp_bmap: bmap::STD_HYP_SUPPORTED,
            vendor_hyp_bmap: bmap::VENDOR_HYP_SUPPORTED,
            has_run: false,
        }
    }
}

impl VmFirmwareState {
    /// A VM that shows its guest `psci_version` (typically from the `psci=` bootarg, see
    /// [`parse_psci_version`]), with every implemented service on. [`Error::Invalid`] for a
    /// version Cairn does not implement.
    pub fn new(psci_version: Version) -> Result<Self> {
        if !is_supported(psci_version) {
            return Err(Error::Invalid);
        }
        Ok(VmFirmwareState { psci_version, ..Self::default() })
    }

    /// The VM-wide PSCI version: what every [`PsciFeature::V0_2Plus`] vCPU reports.
    pub fn psci_version(&self) -> Version {
        self.psci_version
    }

    pub fn std_bmap(&self) -> u64 {
        self.std_bmap
    }

    pub fn std_hyp_bmap(&self) -> u64 {
        self.std_hyp_bmap
    }

    pub fn vendor_hyp_bmap(&self) -> u64 {
        self.vendor_hyp_bmap
    }

    /// Whether any vCPU of this VM has entered the guest.
    pub fn has_run(&self) -> bool {
        self.has_run
    }

    /// Records that a vCPU is about to enter the guest for the first time. Sticky: from now
    /// on the bitmaps and the PSCI version can only be rewritten with their current value.
    pub fn mark_run(&mut self) {
        self.has_run = true;
    }

    /// Records that the VM is off (gone, to be started again from Cairn's prompt): until
    /// it runs again its registers can be rewritten, as before its first run.
    pub fn mark_stopped(&mut self) {
        self.has_run = false;
    }

    /// Whether TRNG calls (owner 4, 0x50-0x5F) are answered; otherwise they return
    /// NOT_SUPPORTED (digest §3.2: "a bit that is cleared makes the matching calls return -1").
    pub fn trng_enabled(&self) -> bool {
        self.std_bmap & bmap::STD_BIT_TRNG_V1_0 != 0
    }

    /// Whether the vendor-hypervisor (owner 6) call UID, revision and FEATURES calls are
    /// answered; otherwise they return NOT_SUPPORTED.
    pub fn vendor_hyp_enabled(&self) -> bool {
        self.vendor_hyp_bmap & bmap::VENDOR_HYP_BIT_FUNC_FEAT != 0
    }

    /// The register view of one vCPU of this VM.
    pub fn vcpu(&mut self, feature: PsciFeature, host: HostWorkarounds) -> VcpuFirmwareRegs<'_> {
        VcpuFirmwareRegs::new(self, feature, host)
    }

    /// Applies one register write to `self`, checking every rule first; on error `self` is
    /// untouched.
    fn write(&mut self, feature: PsciFeature, host: &HostWorkarounds, id: u64, value: u64) -> Result<()> {
        match id {
            reg::PSCI_VERSION => {
                let version = decode_version(value).ok_or(Error::Invalid)?;
                if !feature.allows(version) {
                    return Err(Error::Invalid);
                }
                if self.has_run && version != self.psci_version {
                    return Err(Error::Busy);
                }
                self.psci_version = version;
                Ok(())
            }
            reg::SMCCC_ARCH_WORKAROUND_1 => check_wa(host.wa1, value),
            reg::SMCCC_ARCH_WORKAROUND_2 => check_wa2(host.wa2, value),
            reg::SMCCC_ARCH_WORKAROUND_3 => check_wa(host.wa3, value),
            reg::STD_BMAP => write_bmap(&mut self.std_bmap, bmap::STD_SUPPORTED, self.has_run, value),
            reg::STD_HYP_BMAP => write_bmap(&mut self.std_hyp_bmap, bmap::STD_HYP_SUPPORTED, self.has_run, value),
            reg::VENDOR_HYP_BMAP => {
                write_bmap(&mut self.vendor_hyp_bmap, bmap::VENDOR_HYP_SUPPORTED, self.has_run, value)
            }
            _ => Err(Error::NoEntry),
        }
    }
}

/// The bitmap rules (fw-pseudo-registers.rst; KVM `kvm_arm_set_fw_reg_bmap`), checked in
/// KVM's order: a bit outside `supported` is [`Error::Invalid`]; then, once the VM has run,
/// a value different from the current one is [`Error::Busy`], while the same value succeeds.
fn write_bmap(current: &mut u64, supported: u64, has_run: bool, value: u64) -> Result<()> {
    if value & !supported != 0 {
        return Err(Error::Invalid);
    }
    if has_run && value != *current {
        return Err(Error::Busy);
    }
    *current = value;
    Ok(())
}

/// WORKAROUND_1/3 SET rule (digest §3.2; KVM `kvm_arm_set_fw_reg`): the value must be a
/// defined level with no other bit set, and the host's level must be at least as protective
/// as it, in the order NOT_AVAIL < AVAIL < NOT_REQUIRED. So NOT_AVAIL is always accepted,
/// AVAIL needs an AVAIL or NOT_REQUIRED host, and NOT_REQUIRED needs a NOT_REQUIRED host.
/// Otherwise [`Error::Invalid`]. Nothing is stored: the register keeps reading the host level,
/// which is never worse than what the guest saw before.
fn check_wa(host: WaLevel, value: u64) -> Result<()> {
    let wanted = WaLevel::decode(value).ok_or(Error::Invalid)?;
    if host >= wanted {
        Ok(())
    } else {
        Err(Error::Invalid)
    }
}

/// WORKAROUND_2 SET rule (digest §3.2; KVM `kvm_arm_set_fw_reg`):
/// - only bits 3:0 (the level) and [`WA2_ENABLED`] may be set, and the level must be defined;
/// - ENABLED is valid only with the AVAIL level;
/// - the host's level must rank at least as high in the protection order
///   NOT_AVAIL = UNKNOWN < AVAIL < NOT_REQUIRED ([`Wa2Level::protection`]).
///
/// So NOT_AVAIL and UNKNOWN are always accepted, AVAIL (with or without ENABLED) needs an
/// AVAIL or NOT_REQUIRED host, and NOT_REQUIRED needs a NOT_REQUIRED host. This is KVM's rule
/// (which narrows AVAIL to NOT_REQUIRED because KVM itself never offers AVAIL), extended so
/// that a host offering the dynamic mitigation accepts its own AVAIL. Nothing is stored.
fn check_wa2(host: Wa2Level, value: u64) -> Result<()> {
    if value & !(WA_LEVEL_MASK | WA2_ENABLED) != 0 {
        return Err(Error::Invalid);
    }
    let wanted = Wa2Level::decode(value & WA_LEVEL_MASK).ok_or(Error::Invalid)?;
    if value & WA2_ENABLED != 0 && wanted != Wa2Level::Avail {
        return Err(Error::Invalid);
    }
    if host.protection() >= wanted.protection() {
        Ok(())
    } else {
        Err(Error::Invalid)
    }
}

/// The registers [`VcpuFirmwareRegs::get`] and [`VcpuFirmwareRegs::set`] know, in KVM's
/// `KVM_GET_REG_LIST` order (`kvm_arm_fw_reg_ids` in hypercalls.c). KVM's VENDOR_HYP_BMAP_2
/// (`0x6030_0000_0016_0003`) is absent: Cairn implements none of its services, and accessing
/// it gives [`Error::NoEntry`].
pub fn reg_list() -> &'static [u64] {
    const REG_LIST: [u64; 7] = [
        reg::PSCI_VERSION,
        reg::SMCCC_ARCH_WORKAROUND_1,
        reg::SMCCC_ARCH_WORKAROUND_2,
        reg::SMCCC_ARCH_WORKAROUND_3,
        reg::STD_BMAP,
        reg::STD_HYP_BMAP,
        reg::VENDOR_HYP_BMAP,
    ];
    &REG_LIST
}

/// One vCPU's view of its VM's firmware registers (KVM's GET/SET_ONE_REG on a vCPU fd).
///
/// Rules, per register:
/// - PSCI_VERSION reads 0.1 on a [`PsciFeature::V0_1Only`] vCPU and the VM's version on a
///   [`PsciFeature::V0_2Plus`] one (KVM `kvm_psci_version`). A write must be exactly the
///   encoding of 0.1, 0.2, 1.0 or 1.1 and allowed by the vCPU's flavour, else
///   [`Error::Invalid`]; it changes the whole VM. Unlike KVM, which lets the version change at
///   any time, Cairn freezes it once the VM has run ([`Error::Busy`] for a different value),
///   as the digest advises (§8 item 15, "freeze it at first run").
/// - The workaround registers read the host's level ([`HostWorkarounds`]). A write stores
///   nothing: it succeeds only if the value is well formed and the host's level is at least as
///   protective (digest §3.2: "higher means better protected"). Order for WORKAROUND_1/3:
///   NOT_AVAIL < AVAIL < NOT_REQUIRED; for WORKAROUND_2: NOT_AVAIL = UNKNOWN < AVAIL
///   (with or without [`WA2_ENABLED`], which needs AVAIL) < NOT_REQUIRED. Writing NOT_AVAIL
///   (or UNKNOWN) always succeeds; otherwise [`Error::Invalid`].
/// - The bitmaps read the VM's value. A write with a bit outside [`bmap::STD_SUPPORTED`],
///   [`bmap::STD_HYP_SUPPORTED`] or [`bmap::VENDOR_HYP_SUPPORTED`] is [`Error::Invalid`];
///   after the VM has run, a different value is [`Error::Busy`] and the same value succeeds.
pub struct VcpuFirmwareRegs<'a> {
    vm: &'a mut VmFirmwareState,
    feature: PsciFeature,
    host: HostWorkarounds,
}

impl<'a> VcpuFirmwareRegs<'a> {
    pub fn new(vm: &'a mut VmFirmwareState, feature: PsciFeature, host: HostWorkarounds) -> Self {
        VcpuFirmwareRegs { vm, feature, host }
    }

    /// The PSCI version this vCPU sees: 0.1 without PSCI_0_2, the VM's otherwise.
    pub fn psci_version(&self) -> Version {
        match self.feature {
            PsciFeature::V0_1Only => Version::V0_1,
            PsciFeature::V0_2Plus => self.vm.psci_version,
        }
    }

    /// GET_ONE_REG. [`Error::NoEntry`] for an ID not in [`reg_list`].
    pub fn get(&self, id: u64) -> Result<u64> {
        match id {
            reg::PSCI_VERSION => Ok(u64::from(self.psci_version().encode())),
            reg::SMCCC_ARCH_WORKAROUND_1 => Ok(self.host.wa1.encode()),
            // Level only, as KVM masks with KVM_REG_FEATURE_LEVEL_MASK: Cairn keeps no
            // per-vCPU ENABLED state.
            reg::SMCCC_ARCH_WORKAROUND_2 => Ok(self.host.wa2.encode()),
            reg::SMCCC_ARCH_WORKAROUND_3 => Ok(self.host.wa3.encode()),
            reg::STD_BMAP => Ok(self.vm.std_bmap),
            reg::STD_HYP_BMAP => Ok(self.vm.std_hyp_bmap),
            reg::VENDOR_HYP_BMAP => Ok(self.vm.vendor_hyp_bmap),
            _ => Err(Error::NoEntry),
        }
    }

    /// SET_ONE_REG, under the rules in the type's documentation. On error nothing changes.
    pub fn set(&mut self, id: u64, value: u64) -> Result<()> {
        self.vm.write(self.feature, &self.host, id, value)
    }

    /// Every register in [`reg_list`] with its current value, for save/restore or migration
    /// (digest §3.3 step 1).
    pub fn save(&self) -> Vec<(u64, u64)> {
        reg_list().iter().filter_map(|&id| self.get(id).ok().map(|value| (id, value))).collect()
    }

    /// Writes `regs` in order, all or nothing: they are applied to a copy of the VM state
    /// under the same rules as [`set`](Self::set), and the copy replaces the VM's state only if
    /// every write succeeded. The first failure is returned and leaves the VM unchanged, so
    /// migrating into a VM or host that cannot honour the saved state aborts cleanly (digest
    /// §3.3 step 3). Registers absent from `regs` keep their values; a register listed twice
    /// ends with its last value.
    pub fn restore(&mut self, regs: &[(u64, u64)]) -> Result<()> {
        let mut next = *self.vm;
        for &(id, value) in regs {
            next.write(self.feature, &self.host, id, value)?;
        }
        *self.vm = next;
        Ok(())
    }
}

/// A `psci=` value that is not a PSCI version Cairn implements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsePsciVersionError {
    /// The rejected text.
    pub input: String,
}

impl fmt::Display for ParsePsciVersionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unsupported PSCI version `{}`; accepted:", self.input)?;
        for (i, (name, _)) in SUPPORTED_PSCI_VERSIONS.iter().enumerate() {
            let sep = if i == 0 { " " } else { ", " };
            write!(f, "{sep}{name}")?;
        }
        Ok(())
    }
}

/// Parses the value of Cairn's `psci=` bootarg: exactly `0.1`, `0.2`, `1.0` or `1.1`
/// ([`SUPPORTED_PSCI_VERSIONS`]); no whitespace, no other spelling. Pinning the version
/// instead of using "latest" keeps migration between Cairn builds possible (digest §3.3).
pub fn parse_psci_version(s: &str) -> core::result::Result<Version, ParsePsciVersionError> {
    SUPPORTED_PSCI_VERSIONS
        .iter()
        .find(|&&(name, _)| name == s)
        .map(|&(_, version)| version)
        .ok_or_else(|| ParsePsciVersionError { input: s.into() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use PsciFeature::{V0_1Only, V0_2Plus};

    const PSCI_0_1: u64 = 0x1;
    const PSCI_0_2: u64 = 0x2;
    const PSCI_1_0: u64 = 0x1_0000;
    const PSCI_1_1: u64 = 0x1_0001;
    const PSCI_1_2: u64 = 0x1_0002;
    const PSCI_1_3: u64 = 0x1_0003;

    const PROTECTED_HOST: HostWorkarounds =
        HostWorkarounds { wa1: WaLevel::NotRequired, wa2: Wa2Level::NotRequired, wa3: WaLevel::NotRequired };
    const MITIGATED_HOST: HostWorkarounds =
        HostWorkarounds { wa1: WaLevel::Avail, wa2: Wa2Level::Avail, wa3: WaLevel::Avail };
    const VULNERABLE_HOST: HostWorkarounds =
        HostWorkarounds { wa1: WaLevel::NotAvail, wa2: Wa2Level::NotAvail, wa3: WaLevel::NotAvail };

    fn vm(version: Version) -> VmFirmwareState {
        VmFirmwareState::new(version).unwrap()
    }

    #[test]
    fn register_ids_match_kvm() {
        assert_eq!(reg::PSCI_VERSION, 0x6030_0000_0014_0000);
        assert_eq!(reg::SMCCC_ARCH_WORKAROUND_1, 0x6030_0000_0014_0001);
        assert_eq!(reg::SMCCC_ARCH_WORKAROUND_2, 0x6030_0000_0014_0002);
        assert_eq!(reg::SMCCC_ARCH_WORKAROUND_3, 0x6030_0000_0014_0003);
        assert_eq!(reg::STD_BMAP, 0x6030_0000_0016_0000);
        assert_eq!(reg::STD_HYP_BMAP, 0x6030_0000_0016_0001);
        assert_eq!(reg::VENDOR_HYP_BMAP, 0x6030_0000_0016_0002);
        assert_eq!(
            reg_list(),
            [
                reg::PSCI_VERSION,
                reg::SMCCC_ARCH_WORKAROUND_1,
                reg::SMCCC_ARCH_WORKAROUND_2,
                reg::SMCCC_ARCH_WORKAROUND_3,
                reg::STD_BMAP,
                reg::STD_HYP_BMAP,
                reg::VENDOR_HYP_BMAP
            ]
        );
    }

    #[test]
    fn defaults() {
        let mut state = VmFirmwareState::default();
        assert_eq!(state.psci_version(), psci::DEFAULT_VERSION);
        assert!(is_supported(psci::DEFAULT_VERSION));
        assert!(state.trng_enabled() && state.vendor_hyp_enabled() && !state.has_run());
        let regs = state.vcpu(V0_2Plus, MITIGATED_HOST);
        let expected = [
            (reg::PSCI_VERSION, PSCI_1_1),
            (reg::SMCCC_ARCH_WORKAROUND_1, 1),
            (reg::SMCCC_ARCH_WORKAROUND_2, 2),
            (reg::SMCCC_ARCH_WORKAROUND_3, 1),
            (reg::STD_BMAP, bmap::STD_BIT_TRNG_V1_0),
            (reg::STD_HYP_BMAP, 0),
            (reg::VENDOR_HYP_BMAP, bmap::VENDOR_HYP_BIT_FUNC_FEAT),
        ];
        for (id, value) in expected {
            assert_eq!(regs.get(id), Ok(value), "{id:#x}");
        }
        assert_eq!(regs.save(), expected);
    }

    #[test]
    fn new_accepts_only_implemented_versions() {
        for (_, v) in SUPPORTED_PSCI_VERSIONS {
            assert_eq!(vm(v).psci_version(), v);
        }
        for v in [Version { major: 1, minor: 2 }, Version { major: 1, minor: 3 }, Version { major: 2, minor: 0 }] {
            assert_eq!(VmFirmwareState::new(v), Err(Error::Invalid));
        }
    }

    #[test]
    fn get_and_set_every_register() {
        // (vCPU flavour, register, value written, result, value read back)
        let cases: &[(PsciFeature, u64, u64, Result<()>, u64)] = &[
            (V0_2Plus, reg::PSCI_VERSION, PSCI_1_0, Ok(()), PSCI_1_0),
            (V0_1Only, reg::PSCI_VERSION, PSCI_0_1, Ok(()), PSCI_0_1),
            (V0_2Plus, reg::SMCCC_ARCH_WORKAROUND_1, 1, Ok(()), 2),
            (V0_2Plus, reg::SMCCC_ARCH_WORKAROUND_2, 2 | WA2_ENABLED, Ok(()), 3),
            (V0_2Plus, reg::SMCCC_ARCH_WORKAROUND_3, 2, Ok(()), 2),
            (V0_2Plus, reg::STD_BMAP, 0, Ok(()), 0),
            (V0_2Plus, reg::STD_HYP_BMAP, 0, Ok(()), 0),
            (V0_2Plus, reg::VENDOR_HYP_BMAP, 0, Ok(()), 0),
            (V0_2Plus, reg::STD_HYP_BMAP, bmap::STD_HYP_BIT_PV_TIME, Err(Error::Invalid), 0),
        ];
        for &(feature, id, value, result, read_back) in cases {
            let mut state = VmFirmwareState::default();
            let mut regs = state.vcpu(feature, PROTECTED_HOST);
            assert_eq!(regs.set(id, value), result, "{id:#x} <- {value:#x}");
            assert_eq!(regs.get(id), Ok(read_back), "{id:#x}");
        }
    }

    #[test]
    fn unknown_registers_and_wrong_sizes_are_no_entry() {
        const KVM_REG_SIZE_U32: u64 = 0x0020_0000_0000_0000;
        let vendor_hyp_bmap_2 = reg::fw_reg(reg::KVM_REG_ARM_FW_FEAT_BMAP, 3);
        let psci_version_u32 = reg::PSCI_VERSION & !reg::KVM_REG_SIZE_U64 | KVM_REG_SIZE_U32;
        let workaround_4 = reg::fw_reg(reg::KVM_REG_ARM_FW, 4);
        let core_x0 = 0x6030_0000_0010_0000;
        let mut state = VmFirmwareState::default();
        let before = state;
        let mut regs = state.vcpu(V0_2Plus, PROTECTED_HOST);
        for id in [vendor_hyp_bmap_2, psci_version_u32, workaround_4, core_x0, 0, u64::MAX] {
            assert_eq!(regs.get(id), Err(Error::NoEntry), "{id:#x}");
            assert_eq!(regs.set(id, 0), Err(Error::NoEntry), "{id:#x}");
        }
        assert_eq!(state, before);
    }

    #[test]
    fn psci_version_rules() {
        let garbage = [0, 3, 0x1_0004, 0x2_0000, 0xDEAD_BEEF, 1 << 32 | PSCI_1_0, u64::MAX];
        let mut cases: Vec<(PsciFeature, u64, Result<()>)> = vec![
            (V0_1Only, PSCI_0_1, Ok(())),
            (V0_1Only, PSCI_0_2, Err(Error::Invalid)),
            (V0_1Only, PSCI_1_0, Err(Error::Invalid)),
            (V0_1Only, PSCI_1_1, Err(Error::Invalid)),
            (V0_2Plus, PSCI_0_1, Err(Error::Invalid)),
            (V0_2Plus, PSCI_0_2, Ok(())),
            (V0_2Plus, PSCI_1_0, Ok(())),
            (V0_2Plus, PSCI_1_1, Ok(())),
        ];
        for feature in [V0_1Only, V0_2Plus] {
            cases.extend([PSCI_1_2, PSCI_1_3].iter().chain(&garbage).map(|&v| (feature, v, Err(Error::Invalid))));
        }
        for (feature, value, result) in cases {
            let mut state = vm(if feature == V0_1Only { Version::V0_1 } else { Version::V1_1 });
            let before = state;
            assert_eq!(
                state.vcpu(feature, PROTECTED_HOST).set(reg::PSCI_VERSION, value),
                result,
                "{feature:?} {value:#x}"
            );
            if result.is_err() {
                assert_eq!(state, before);
            } else {
                assert_eq!(u64::from(state.psci_version().encode()), value);
            }
        }
    }

    #[test]
    fn a_0_1_vcpu_always_reads_0_1() {
        let mut state = VmFirmwareState::default();
        assert_eq!(state.vcpu(V0_1Only, PROTECTED_HOST).get(reg::PSCI_VERSION), Ok(PSCI_0_1));
        assert_eq!(state.vcpu(V0_2Plus, PROTECTED_HOST).get(reg::PSCI_VERSION), Ok(PSCI_1_1));
    }

    #[test]
    fn writes_through_one_vcpu_change_the_vm() {
        let mut state = VmFirmwareState::default();
        {
            let mut a = state.vcpu(V0_2Plus, PROTECTED_HOST);
            a.set(reg::PSCI_VERSION, PSCI_0_2).unwrap();
            a.set(reg::STD_BMAP, 0).unwrap();
        }
        let b = state.vcpu(V0_2Plus, PROTECTED_HOST);
        assert_eq!(b.get(reg::PSCI_VERSION), Ok(PSCI_0_2));
        assert_eq!(b.psci_version(), Version::V0_2);
        assert_eq!(b.get(reg::STD_BMAP), Ok(0));
        assert_eq!(state.psci_version(), Version::V0_2);
        assert!(!state.trng_enabled());
    }

    #[test]
    fn bitmap_rules() {
        use bmap::*;
        // (register, current value, VM has run, value written, result)
        let cases: &[(u64, u64, bool, u64, Result<()>)] = &[
            (reg::STD_BMAP, STD_BIT_TRNG_V1_0, false, 0, Ok(())),
            (reg::STD_BMAP, 0, false, STD_BIT_TRNG_V1_0, Ok(())),
            (reg::STD_BMAP, STD_BIT_TRNG_V1_0, false, 1 << 1, Err(Error::Invalid)),
            (reg::STD_BMAP, STD_BIT_TRNG_V1_0, false, u64::MAX, Err(Error::Invalid)),
            (reg::STD_HYP_BMAP, 0, false, 0, Ok(())),
            (reg::STD_HYP_BMAP, 0, false, STD_HYP_BIT_PV_TIME, Err(Error::Invalid)),
            (reg::VENDOR_HYP_BMAP, VENDOR_HYP_BIT_FUNC_FEAT, false, 0, Ok(())),
            (reg::VENDOR_HYP_BMAP, 0, false, VENDOR_HYP_BIT_FUNC_FEAT, Ok(())),
            (reg::VENDOR_HYP_BMAP, VENDOR_HYP_BIT_FUNC_FEAT, false, VENDOR_HYP_BIT_PTP, Err(Error::Invalid)),
            (
                reg::VENDOR_HYP_BMAP,
                VENDOR_HYP_BIT_FUNC_FEAT,
                false,
                VENDOR_HYP_BIT_FUNC_FEAT | VENDOR_HYP_BIT_PTP,
                Err(Error::Invalid),
            ),
            // After the first run: a change is EBUSY, the same value is fine, and an unknown
            // bit is still EINVAL (checked first, as KVM does).
            (reg::STD_BMAP, STD_BIT_TRNG_V1_0, true, 0, Err(Error::Busy)),
            (reg::STD_BMAP, STD_BIT_TRNG_V1_0, true, STD_BIT_TRNG_V1_0, Ok(())),
            (reg::STD_BMAP, 0, true, 0, Ok(())),
            (reg::STD_BMAP, 0, true, STD_BIT_TRNG_V1_0, Err(Error::Busy)),
            (reg::STD_BMAP, STD_BIT_TRNG_V1_0, true, 1 << 1, Err(Error::Invalid)),
            (reg::STD_HYP_BMAP, 0, true, 0, Ok(())),
            (reg::VENDOR_HYP_BMAP, VENDOR_HYP_BIT_FUNC_FEAT, true, 0, Err(Error::Busy)),
            (reg::VENDOR_HYP_BMAP, VENDOR_HYP_BIT_FUNC_FEAT, true, VENDOR_HYP_BIT_FUNC_FEAT, Ok(())),
        ];
        for &(id, current, has_run, value, result) in cases {
            let mut state = VmFirmwareState::default();
            state.vcpu(V0_2Plus, PROTECTED_HOST).set(id, current).unwrap();
            if has_run {
                state.mark_run();
            }
            let before = state;
            let mut regs = state.vcpu(V0_2Plus, PROTECTED_HOST);
            assert_eq!(regs.set(id, value), result, "{id:#x}: {current:#x} -> {value:#x}, run {has_run}");
            let expected = if result.is_ok() { value } else { current };
            assert_eq!(regs.get(id), Ok(expected));
            if result.is_err() {
                assert_eq!(state, before);
            }
        }
    }

    #[test]
    fn psci_version_is_frozen_after_the_first_run() {
        let mut state = VmFirmwareState::default();
        state.mark_run();
        let mut regs = state.vcpu(V0_2Plus, PROTECTED_HOST);
        assert_eq!(regs.set(reg::PSCI_VERSION, PSCI_1_0), Err(Error::Busy));
        assert_eq!(regs.set(reg::PSCI_VERSION, PSCI_1_1), Ok(()));
        assert_eq!(regs.set(reg::PSCI_VERSION, PSCI_1_2), Err(Error::Invalid));
        assert_eq!(state.psci_version(), Version::V1_1);
    }

    #[test]
    fn cleared_bits_disable_the_services() {
        let mut state = VmFirmwareState::default();
        assert!(state.trng_enabled() && state.vendor_hyp_enabled());
        state.vcpu(V0_2Plus, PROTECTED_HOST).set(reg::STD_BMAP, 0).unwrap();
        assert!(!state.trng_enabled() && state.vendor_hyp_enabled());
        state.vcpu(V0_2Plus, PROTECTED_HOST).set(reg::VENDOR_HYP_BMAP, 0).unwrap();
        assert!(!state.trng_enabled() && !state.vendor_hyp_enabled());
        state.vcpu(V0_2Plus, PROTECTED_HOST).set(reg::STD_BMAP, bmap::STD_BIT_TRNG_V1_0).unwrap();
        assert!(state.trng_enabled());
    }

    #[test]
    fn workaround_1_and_3_rules() {
        use WaLevel::*;
        const OK: Result<()> = Ok(());
        const INVAL: Result<()> = Err(Error::Invalid);
        // Host level, then the result of writing NOT_AVAIL (0), AVAIL (1), NOT_REQUIRED (2).
        let matrix = [(NotAvail, [OK, INVAL, INVAL]), (Avail, [OK, OK, INVAL]), (NotRequired, [OK, OK, OK])];
        let undefined = [3, 0xF, WA2_ENABLED, WA2_ENABLED | 1, 1 << 32, u64::MAX];
        for (host_level, results) in matrix {
            for (id, host) in [
                (reg::SMCCC_ARCH_WORKAROUND_1, HostWorkarounds { wa1: host_level, ..PROTECTED_HOST }),
                (reg::SMCCC_ARCH_WORKAROUND_3, HostWorkarounds { wa3: host_level, ..PROTECTED_HOST }),
            ] {
                let mut state = VmFirmwareState::default();
                let mut regs = state.vcpu(V0_2Plus, host);
                for (value, result) in [0, 1, 2].into_iter().zip(results) {
                    assert_eq!(regs.set(id, value), result, "{id:#x} host {host_level:?} <- {value}");
                    // The register keeps reading the host's level whatever was written.
                    assert_eq!(regs.get(id), Ok(host_level.encode()));
                }
                for value in undefined {
                    assert_eq!(regs.set(id, value), INVAL, "{id:#x} <- {value:#x}");
                }
            }
        }
    }

    #[test]
    fn workaround_2_rules() {
        use Wa2Level::*;
        const OK: Result<()> = Ok(());
        const INVAL: Result<()> = Err(Error::Invalid);
        let values = [0, 1, 2, 2 | WA2_ENABLED, 3];
        // Host level, then the result of writing each of `values`.
        let matrix = [
            (NotAvail, [OK, OK, INVAL, INVAL, INVAL]),
            (Unknown, [OK, OK, INVAL, INVAL, INVAL]),
            (Avail, [OK, OK, OK, OK, INVAL]),
            (NotRequired, [OK, OK, OK, OK, OK]),
        ];
        // ENABLED without AVAIL, undefined levels, stray bits.
        let invalid = [WA2_ENABLED, 1 | WA2_ENABLED, 3 | WA2_ENABLED, 4, 0xF, 1 << 5, 1 << 32, u64::MAX];
        for (host_level, results) in matrix {
            let mut state = VmFirmwareState::default();
            let mut regs = state.vcpu(V0_2Plus, HostWorkarounds { wa2: host_level, ..PROTECTED_HOST });
            for (value, result) in values.into_iter().zip(results) {
                assert_eq!(regs.set(reg::SMCCC_ARCH_WORKAROUND_2, value), result, "host {host_level:?} <- {value:#x}");
                assert_eq!(regs.get(reg::SMCCC_ARCH_WORKAROUND_2), Ok(host_level.encode()));
            }
            for value in invalid {
                assert_eq!(regs.set(reg::SMCCC_ARCH_WORKAROUND_2, value), INVAL, "{value:#x}");
            }
        }
    }

    /// A saved register list from a VM with `version`, TRNG off, on `host`.
    fn saved(version: Version, host: HostWorkarounds) -> Vec<(u64, u64)> {
        let mut state = vm(version);
        let mut regs = state.vcpu(PsciFeature::for_version(version), host);
        regs.set(reg::STD_BMAP, 0).unwrap();
        regs.save()
    }

    fn replace(mut regs: Vec<(u64, u64)>, id: u64, value: u64) -> Vec<(u64, u64)> {
        regs.iter_mut().filter(|(i, _)| *i == id).for_each(|(_, v)| *v = value);
        regs
    }

    #[test]
    fn restore_succeeds_when_the_destination_can_honour_the_state() {
        // (source version, source host, destination version, destination host)
        let cases = [
            (Version::V1_1, MITIGATED_HOST, Version::V1_1, MITIGATED_HOST),
            (Version::V1_0, MITIGATED_HOST, Version::V1_1, MITIGATED_HOST),
            (Version::V0_2, VULNERABLE_HOST, Version::V1_1, PROTECTED_HOST),
            (Version::V1_1, MITIGATED_HOST, Version::V1_0, PROTECTED_HOST),
            (Version::V0_1, PROTECTED_HOST, Version::V0_1, PROTECTED_HOST),
        ];
        for (src_version, src_host, dst_version, dst_host) in cases {
            let regs = saved(src_version, src_host);
            let mut dst = vm(dst_version);
            let mut view = dst.vcpu(PsciFeature::for_version(dst_version), dst_host);
            assert_eq!(view.restore(&regs), Ok(()), "{src_version:?} -> {dst_version:?}");
            assert_eq!(view.psci_version(), src_version);
            assert_eq!(dst.psci_version(), src_version);
            assert!(!dst.trng_enabled());
        }
        // Rewriting the same bitmaps after the destination has run is allowed.
        let regs = saved(Version::V1_1, PROTECTED_HOST);
        let mut dst = vm(Version::V1_1);
        dst.vcpu(V0_2Plus, PROTECTED_HOST).set(reg::STD_BMAP, 0).unwrap();
        dst.mark_run();
        assert_eq!(dst.vcpu(V0_2Plus, PROTECTED_HOST).restore(&regs), Ok(()));
    }

    /// The VM a saved state is restored into.
    #[derive(Clone, Copy)]
    struct Destination {
        version: Version,
        feature: PsciFeature,
        host: HostWorkarounds,
        has_run: bool,
    }

    const DST_0_2_PLUS: Destination =
        Destination { version: Version::V1_1, feature: V0_2Plus, host: PROTECTED_HOST, has_run: false };
    const DST_0_1_ONLY: Destination = Destination { version: Version::V0_1, feature: V0_1Only, ..DST_0_2_PLUS };

    #[test]
    fn failed_restore_leaves_the_destination_unchanged() {
        let on_host = |host| Destination { host, ..DST_0_2_PLUS };
        let from_1_0 = saved(Version::V1_0, PROTECTED_HOST);
        let ptp = bmap::VENDOR_HYP_BIT_FUNC_FEAT | bmap::VENDOR_HYP_BIT_PTP;
        let unknown = [from_1_0.clone(), vec![(reg::fw_reg(reg::KVM_REG_ARM_FW_FEAT_BMAP, 3), 0)]].concat();
        let cases = vec![
            ("1.1 into 0.1-only vCPUs", saved(Version::V1_1, PROTECTED_HOST), DST_0_1_ONLY, Error::Invalid),
            ("0.1 into a 0.2+ vCPU", saved(Version::V0_1, PROTECTED_HOST), DST_0_2_PLUS, Error::Invalid),
            ("0.2 into a 0.1 vCPU", saved(Version::V0_2, PROTECTED_HOST), DST_0_1_ONLY, Error::Invalid),
            (
                "1.3 from a newer source",
                replace(from_1_0.clone(), reg::PSCI_VERSION, PSCI_1_3),
                DST_0_2_PLUS,
                Error::Invalid,
            ),
            ("PTP bit", replace(from_1_0.clone(), reg::VENDOR_HYP_BMAP, ptp), DST_0_2_PLUS, Error::Invalid),
            (
                "PV time bit",
                replace(from_1_0.clone(), reg::STD_HYP_BMAP, bmap::STD_HYP_BIT_PV_TIME),
                DST_0_2_PLUS,
                Error::Invalid,
            ),
            (
                "WA1 NOT_REQUIRED on an AVAIL host",
                from_1_0.clone(),
                on_host(HostWorkarounds { wa1: WaLevel::Avail, ..PROTECTED_HOST }),
                Error::Invalid,
            ),
            (
                "WA2 NOT_REQUIRED on an AVAIL host",
                from_1_0.clone(),
                on_host(HostWorkarounds { wa2: Wa2Level::Avail, ..PROTECTED_HOST }),
                Error::Invalid,
            ),
            (
                "WA3 NOT_REQUIRED on a NOT_AVAIL host",
                from_1_0.clone(),
                on_host(HostWorkarounds { wa3: WaLevel::NotAvail, ..PROTECTED_HOST }),
                Error::Invalid,
            ),
            ("unknown register", unknown, DST_0_2_PLUS, Error::NoEntry),
            ("destination already ran", from_1_0, Destination { has_run: true, ..DST_0_2_PLUS }, Error::Busy),
        ];
        for (what, regs, dst, error) in cases {
            // In saved order and reversed, so the failing register comes both before and
            // after registers that would have been applied.
            for regs in [regs.clone(), regs.into_iter().rev().collect()] {
                let mut state = vm(dst.version);
                if dst.has_run {
                    state.mark_run();
                }
                let before = state;
                assert_eq!(state.vcpu(dst.feature, dst.host).restore(&regs), Err(error), "{what}");
                assert_eq!(state, before, "{what}");
            }
        }
    }

    #[test]
    fn parses_psci_bootarg() {
        let ok = [("0.1", Version::V0_1), ("0.2", Version::V0_2), ("1.0", Version::V1_0), ("1.1", Version::V1_1)];
        for (s, v) in ok {
            assert_eq!(parse_psci_version(s), Ok(v));
        }
        let bad = ["1.2", "1.3", "0.3", "2.0", "", "1", "1.", " 1.0", "1.0 ", "v1.0", "1.00", "01.0", "1.1.1", "1,0"];
        for s in bad {
            let err = parse_psci_version(s).unwrap_err();
            assert_eq!(err.input, s);
            let msg = err.to_string();
            assert!(msg.contains("0.1, 0.2, 1.0, 1.1"), "{msg}");
            assert!(msg.contains(&alloc::format!("`{s}`")), "{msg}");
        }
        assert_eq!(
            parse_psci_version("1.2").unwrap_err().to_string(),
            "unsupported PSCI version `1.2`; accepted: 0.1, 0.2, 1.0, 1.1"
        );
    }

    #[test]
    fn errors_carry_kvm_errnos() {
        assert_eq!(Error::NoEntry.errno(), 2);
        assert_eq!(Error::Busy.errno(), 16);
        assert_eq!(Error::Invalid.errno(), 22);
    }

    #[test]
    fn host_workarounds_follow_the_firmwares_arch_features_answers() {
        use crate::smccc::{SMCCC_ARCH_WORKAROUND_1, SMCCC_ARCH_WORKAROUND_2, SMCCC_ARCH_WORKAROUND_3};
        // QEMU's SMCCC 1.0 firmware cannot tell: every answer is -1.
        let unknown = HostWorkarounds::from_arch_features(|_| -1);
        assert_eq!(unknown, HostWorkarounds { wa1: WaLevel::NotAvail, wa2: Wa2Level::Unknown, wa3: WaLevel::NotAvail });
        let answers = |fid| match fid {
            SMCCC_ARCH_WORKAROUND_1 => 0,
            SMCCC_ARCH_WORKAROUND_2 => -2,
            SMCCC_ARCH_WORKAROUND_3 => 1,
            _ => -1,
        };
        let mixed = HostWorkarounds::from_arch_features(answers);
        assert_eq!(
            mixed,
            HostWorkarounds { wa1: WaLevel::Avail, wa2: Wa2Level::NotRequired, wa3: WaLevel::NotRequired }
        );
        assert_eq!(HostWorkarounds::from_arch_features(|_| 0).wa2, Wa2Level::Avail);
    }

    #[test]
    fn feature_follows_version() {
        assert_eq!(PsciFeature::for_version(Version::V0_1), V0_1Only);
        for v in [Version::V0_2, Version::V1_0, Version::V1_1] {
            assert_eq!(PsciFeature::for_version(v), V0_2Plus);
        }
    }
}
