//! Guest bundles: how a guest reaches Cairn on a board whose firmware loads one kernel and
//! one initramfs (the Raspberry Pi). The bundle is a cpio "newc" archive (the format of
//! Linux's initramfs, `cpio -o -H newc`; see the kernel's
//! Documentation/driver-api/early-userspace/buffer-format.rst) loaded as the firmware's
//! initramfs, holding:
//!
//! - `cairn-guest/kernel`: the guest's arm64 Image (required);
//! - `cairn-guest/initramfs`: its initramfs;
//! - `cairn-guest/dtb`: a device tree to base the guest's on, instead of the host's;
//! - `cairn-guest/cmdline`: the guest kernel's command line;
//! - `cairn-guest/vm.conf`: VM settings, `key=value` lines: the `cairn.*` settings of
//!   crate::partition without the prefix (`cpus=`, `mem=`, `psci=`, `on-reset=`, ...).
//!
//! For several VMs, the same files go in one directory per VM, `cairn-guest/<name>/`
//! (`cairn-guest/alpha/kernel`, `cairn-guest/alpha/vm.conf`, ...): each directory with a
//! kernel is one VM, named after it, in the order the archive holds them.
//!
//! scripts/guest-bundle builds one. Parsing only borrows from the archive.

/// The newc header: magic then 13 fields of 8 hex digits.
const MAGIC: &[u8] = b"070701";
const HEADER_LEN: usize = 110;
const FIELD_LEN: usize = 8;
/// Field indices after the magic.
const FIELD_FILESIZE: usize = 6;
const FIELD_NAMESIZE: usize = 11;
/// Header plus name, and file data, are each padded to a multiple of 4 bytes.
const ALIGN: usize = 4;
const TRAILER: &str = "TRAILER!!!";

/// The bundle's directory, and its members' names (in it, or in a VM's directory in it).
const DIR: &str = "cairn-guest/";
const KERNEL: &str = "kernel";
const INITRAMFS: &str = "initramfs";
const DTB: &str = "dtb";
const CMDLINE: &str = "cmdline";
const VM_CONF: &str = "vm.conf";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BundleError {
    /// Not a cpio newc archive (or cut short).
    NotCpio,
    /// A cpio archive without `cairn-guest/kernel`.
    NoKernel,
    /// A text member that is not UTF-8.
    NotText,
}

/// A guest bundle: one guest, or one per VM directory, in archive order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bundle<'a> {
    pub guests: alloc::vec::Vec<Guest<'a>>,
}

/// One guest's members, as slices of the archive, with their offsets in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Guest<'a> {
    /// Its directory's name (`cairn-guest/<name>/`); None for the single-guest layout.
    pub name: Option<&'a str>,
    pub kernel: Member<'a>,
    pub initramfs: Option<Member<'a>>,
    pub dtb: Option<Member<'a>>,
    pub cmdline: Option<&'a str>,
    pub vm_conf: Option<&'a str>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Member<'a> {
    /// Where the data starts in the archive.
    pub offset: usize,
    pub data: &'a [u8],
}

/// Whether `archive` starts like a cpio newc archive (and so should be read as a bundle).
pub fn looks_like_bundle(archive: &[u8]) -> bool {
    archive.starts_with(MAGIC)
}

fn align(n: usize) -> usize {
    n.next_multiple_of(ALIGN)
}

fn field(header: &[u8], index: usize) -> Option<usize> {
    let start = MAGIC.len() + index * FIELD_LEN;
    let text = core::str::from_utf8(header.get(start..start + FIELD_LEN)?).ok()?;
    usize::from_str_radix(text, 16).ok()
}

/// Reads a guest bundle.
pub fn parse(archive: &[u8]) -> Result<Bundle<'_>, BundleError> {
    // Each guest as it is found, with whether its kernel has been seen.
    let mut found: alloc::vec::Vec<(Guest<'_>, bool)> = alloc::vec::Vec::new();
    let mut at = 0;
    loop {
        let header = archive.get(at..at + HEADER_LEN).ok_or(BundleError::NotCpio)?;
        if !header.starts_with(MAGIC) {
            return Err(BundleError::NotCpio);
        }
        let name_size = field(header, FIELD_NAMESIZE).ok_or(BundleError::NotCpio)?;
        let file_size = field(header, FIELD_FILESIZE).ok_or(BundleError::NotCpio)?;
        let name_bytes = archive.get(at + HEADER_LEN..at + HEADER_LEN + name_size).ok_or(BundleError::NotCpio)?;
        // The name includes its terminating NUL.
        let name = core::str::from_utf8(name_bytes.strip_suffix(&[0]).unwrap_or(name_bytes))
            .map_err(|_| BundleError::NotCpio)?;
        let data_at = align(at + HEADER_LEN + name_size);
        if name == TRAILER {
            break;
        }
        let data = archive.get(data_at..data_at + file_size).ok_or(BundleError::NotCpio)?;
        if let Some((vm, file)) = split_name(name) {
            let index = match found.iter().position(|(g, _)| g.name == vm) {
                Some(i) => i,
                None => {
                    found.push((Guest { name: vm, ..Guest::default() }, false));
                    found.len() - 1
                }
            };
            let (guest, has_kernel) = &mut found[index];
            *has_kernel |= file == KERNEL;
            add_member(guest, file, Member { offset: data_at, data })?;
        }
        at = align(data_at + file_size);
    }
    let guests: alloc::vec::Vec<Guest<'_>> = found.into_iter().filter(|(_, k)| *k).map(|(g, _)| g).collect();
    if guests.is_empty() {
        return Err(BundleError::NoKernel);
    }
    Ok(Bundle { guests })
}

/// A member's VM directory (None: the single-guest layout) and file name, if it is in
/// the bundle's directory.
fn split_name(name: &str) -> Option<(Option<&str>, &str)> {
    let rest = name.trim_start_matches("./").strip_prefix(DIR)?;
    match rest.split_once('/') {
        Some((vm, file)) if !vm.is_empty() && !file.contains('/') => Some((Some(vm), file)),
        Some(_) => None,
        None => Some((None, rest)),
    }
}

fn add_member<'a>(guest: &mut Guest<'a>, file: &str, member: Member<'a>) -> Result<(), BundleError> {
    let text = || core::str::from_utf8(member.data).map(str::trim).map_err(|_| BundleError::NotText);
    match file {
        KERNEL => guest.kernel = member,
        INITRAMFS => guest.initramfs = Some(member),
        DTB => guest.dtb = Some(member),
        CMDLINE => guest.cmdline = Some(text()?),
        VM_CONF => guest.vm_conf = Some(text()?),
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// A newc member as `cpio -o -H newc` writes it.
    fn member(out: &mut Vec<u8>, name: &str, data: &[u8]) {
        let name_size = name.len() + 1;
        let fields = [1, 0o100644, 0, 0, 1, 0, data.len(), 0, 0, 0, 0, name_size, 0];
        out.extend_from_slice(MAGIC);
        for f in fields {
            out.extend_from_slice(alloc::format!("{f:08X}").as_bytes());
        }
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.resize(align(out.len()), 0);
        out.extend_from_slice(data);
        out.resize(align(out.len()), 0);
    }

    fn archive(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, data) in members {
            member(&mut out, name, data);
        }
        member(&mut out, TRAILER, b"");
        out
    }

    #[test]
    fn reads_every_member_in_place() {
        let a = archive(&[
            ("cairn-guest", b""),
            ("cairn-guest/cmdline", b"console=ttyAMA0 quiet\n"),
            ("cairn-guest/vm.conf", b"vcpus=4 # every CPU\npsci=1.0\n"),
            ("cairn-guest/dtb", b"\xd0\x0d\xfe\xed"),
            ("cairn-guest/kernel", b"ARMd kernel bytes"),
            ("cairn-guest/initramfs", b"0707 initramfs"),
        ]);
        assert!(looks_like_bundle(&a));
        let b = parse(&a).unwrap().guests[0];
        assert_eq!(b.name, None);
        assert_eq!(b.kernel.data, b"ARMd kernel bytes");
        assert_eq!(&a[b.kernel.offset..b.kernel.offset + b.kernel.data.len()], b.kernel.data);
        assert_eq!(b.kernel.offset % ALIGN, 0);
        assert_eq!(b.initramfs.unwrap().data, b"0707 initramfs");
        assert_eq!(b.dtb.unwrap().data, b"\xd0\x0d\xfe\xed");
        assert_eq!(b.cmdline, Some("console=ttyAMA0 quiet"));
        assert_eq!(b.vm_conf, Some("vcpus=4 # every CPU\npsci=1.0"), "read by crate::partition");
    }

    #[test]
    fn the_kernel_is_required_and_garbage_is_refused() {
        assert_eq!(parse(&archive(&[("cairn-guest/initramfs", b"x")])), Err(BundleError::NoKernel));
        assert_eq!(parse(b"not an archive at all"), Err(BundleError::NotCpio));
        let mut cut = archive(&[("cairn-guest/kernel", b"0123456789")]);
        cut.truncate(HEADER_LEN + 10);
        assert_eq!(parse(&cut), Err(BundleError::NotCpio));
        assert!(!looks_like_bundle(b"\x1f\x8b gzip"));
    }

    #[test]
    fn names_may_start_with_dot_slash() {
        let a = archive(&[("./cairn-guest/kernel", b"K")]);
        let b = parse(&a).unwrap();
        assert_eq!(b.guests[0].kernel.data, b"K");
    }

    #[test]
    fn one_directory_per_vm_in_archive_order() {
        let a = archive(&[
            ("cairn-guest/beta", b""),
            ("cairn-guest/beta/vm.conf", b"cpus=2-3\n"),
            ("cairn-guest/beta/kernel", b"KB"),
            ("cairn-guest/alpha/cmdline", b"console=ttyAMA0"),
            ("cairn-guest/alpha/kernel", b"KA"),
            ("cairn-guest/alpha/initramfs", b"IA"),
            ("cairn-guest/gamma/cmdline", b"no kernel: not a VM"),
            ("cairn-guest/beta/deeper/kernel", b"ignored"),
        ]);
        let b = parse(&a).unwrap();
        let names: Vec<_> = b.guests.iter().map(|g| g.name).collect();
        assert_eq!(names, [Some("beta"), Some("alpha")]);
        assert_eq!(b.guests[0].kernel.data, b"KB");
        assert_eq!(b.guests[0].vm_conf, Some("cpus=2-3"));
        assert_eq!(b.guests[1].initramfs.unwrap().data, b"IA");
        assert_eq!(b.guests[1].cmdline, Some("console=ttyAMA0"));
    }
}
