//! The `hello-world` image built into the binary: a tiny static x86_64 ELF (hand-assembled: one
//! write(2) and one exit(2)) printing a greeting that explains what just happened, in a one-layer
//! image tagged `hello-world:latest`. Created at engine start if missing, byte-identical every time
//! (fixed mtimes and created date), so its id is stable.

use berth_store::Digest;
use serde_json::json;

use crate::archive::MEDIA_LAYER_TAR;
use crate::images::{ImageService, LayerRef, TAGS_TABLE};
use crate::{EngineError, Result};

/// The greeting the container prints.
pub const GREETING: &str = "\nHello from berth!\nThis message shows that your installation appears to be working correctly.\n\nTo generate this message, berth took the following steps:\n 1. The berth client contacted the berth engine.\n 2. The engine found the \"hello-world\" image built into it (no network was needed).\n 3. The engine created a new container from that image, in its own namespaces and cgroup,\n    which runs the executable that produces the output you are currently reading.\n 4. The engine streamed that output to the berth client, which sent it to your terminal.\n\nTo try something more ambitious, you can run a shell in a container with:\n $ berth run -it busybox sh\n\nThe docker CLI works too: DOCKER_HOST=unix:///run/berth/berth.sock docker run hello-world\n\n";

const TAG: &str = "hello-world:latest";
const CREATED: &str = "2026-01-01T00:00:00Z";
const BASE: u64 = 0x40_0000;
const EHDR: usize = 64;
const PHDR: usize = 56;

/// The machine code: write(1, msg, len); exit(0). `msg` follows the code.
fn code(len: u32) -> Vec<u8> {
    let mut c = Vec::new();
    c.extend([0xb8, 1, 0, 0, 0]); // mov eax, 1 (write)
    c.extend([0xbf, 1, 0, 0, 0]); // mov edi, 1 (stdout)
    let lea_end = c.len() + 7;
    c.extend([0x48, 0x8d, 0x35]); // lea rsi, [rip + disp32]
    let disp_at = c.len();
    c.extend([0, 0, 0, 0]);
    c.push(0xba); // mov edx, len
    c.extend(len.to_le_bytes());
    c.extend([0x0f, 0x05]); // syscall
    c.extend([0xb8, 60, 0, 0, 0]); // mov eax, 60 (exit)
    c.extend([0x31, 0xff]); // xor edi, edi
    c.extend([0x0f, 0x05]); // syscall
    let disp = (c.len() - lea_end) as u32;
    c[disp_at..disp_at + 4].copy_from_slice(&disp.to_le_bytes());
    c
}

/// The static ELF64 executable: header, one PT_LOAD (R+X) mapping the whole file, code, message.
pub fn elf() -> Vec<u8> {
    let msg = GREETING.as_bytes();
    let code = code(msg.len() as u32);
    let total = (EHDR + PHDR + code.len() + msg.len()) as u64;
    let entry = BASE + (EHDR + PHDR) as u64;
    let mut e = Vec::with_capacity(total as usize);
    // ELF header.
    e.extend([0x7f, b'E', b'L', b'F', 2, 1, 1, 0]); // magic, 64-bit, little endian, v1, SysV
    e.extend([0u8; 8]); // padding
    e.extend(2u16.to_le_bytes()); // ET_EXEC
    e.extend(0x3eu16.to_le_bytes()); // EM_X86_64
    e.extend(1u32.to_le_bytes()); // EV_CURRENT
    e.extend(entry.to_le_bytes()); // e_entry
    e.extend((EHDR as u64).to_le_bytes()); // e_phoff
    e.extend(0u64.to_le_bytes()); // e_shoff
    e.extend(0u32.to_le_bytes()); // e_flags
    e.extend((EHDR as u16).to_le_bytes()); // e_ehsize
    e.extend((PHDR as u16).to_le_bytes()); // e_phentsize
    e.extend(1u16.to_le_bytes()); // e_phnum
    e.extend(64u16.to_le_bytes()); // e_shentsize
    e.extend(0u16.to_le_bytes()); // e_shnum
    e.extend(0u16.to_le_bytes()); // e_shstrndx
                                  // Program header.
    e.extend(1u32.to_le_bytes()); // PT_LOAD
    e.extend(5u32.to_le_bytes()); // PF_R | PF_X
    e.extend(0u64.to_le_bytes()); // p_offset
    e.extend(BASE.to_le_bytes()); // p_vaddr
    e.extend(BASE.to_le_bytes()); // p_paddr
    e.extend(total.to_le_bytes()); // p_filesz
    e.extend(total.to_le_bytes()); // p_memsz
    e.extend(0x1000u64.to_le_bytes()); // p_align
    e.extend(&code);
    e.extend(msg);
    e
}

/// The layer: `/hello`, mode 0755, root-owned, mtime 0.
pub fn layer_tar() -> Result<Vec<u8>> {
    let bin = elf();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_path("hello")
        .map_err(|e| EngineError::Internal(e.to_string()))?;
    h.set_size(bin.len() as u64);
    h.set_mode(0o755);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    b.append(&h, &bin[..])?;
    Ok(b.into_inner()?)
}

fn config(diff_id: &Digest) -> serde_json::Value {
    json!({
        "architecture": "amd64",
        "os": "linux",
        "created": CREATED,
        "config": {
            "Cmd": ["/hello"],
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
        "history": [
            {"created": CREATED, "created_by": "COPY hello / # berth built-in"},
            {"created": CREATED, "created_by": "CMD [\"/hello\"]", "empty_layer": true},
        ],
    })
}

/// Make sure `hello-world:latest` exists (do nothing if the tag points anywhere already).
pub fn ensure(images: &ImageService) -> Result<()> {
    if let Some(id) = images.db.get::<Digest>(TAGS_TABLE, TAG)? {
        if images.get(&id)?.is_some() {
            return Ok(());
        }
    }
    let tar = layer_tar()?;
    let blob = images.content.put(&tar)?;
    let info = images.layers.apply(None, &mut &tar[..], Some(&blob))?;
    let cfg = serde_json::to_vec(&config(&info.diff_id))
        .map_err(|e| EngineError::Internal(e.to_string()))?;
    let config_digest = images.content.put(&cfg)?;
    let layer = LayerRef {
        blob: Some(blob),
        media_type: MEDIA_LAYER_TAR.to_string(),
        diff_id: info.diff_id,
        chain_id: info.chain_id,
        size: info.size,
    };
    images.add_image(&config_digest, vec![layer], &[TAG.to_string()])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn elf_prints_greeting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hello");
        std::fs::write(&path, elf()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = std::process::Command::new(&path).output().unwrap();
        assert!(out.status.success(), "{:?}", out.status);
        assert_eq!(String::from_utf8_lossy(&out.stdout), GREETING);
    }

    #[test]
    fn deterministic_image() {
        let d1 = tempfile::tempdir().unwrap();
        let d2 = tempfile::tempdir().unwrap();
        let s1 = crate::images::tests::service(d1.path());
        let s2 = crate::images::tests::service(d2.path());
        ensure(&s1).unwrap();
        ensure(&s1).unwrap();
        ensure(&s2).unwrap();
        let a = s1.resolve("hello-world").unwrap();
        let b = s2.resolve("hello-world:latest").unwrap();
        assert_eq!(a.id, b.id);
        assert_eq!(s1.all().unwrap().len(), 1);
        assert_eq!(s1.run_config(&a).unwrap().cmd, vec!["/hello"]);
        let hello = s1.layers.dir(&a.layers[0].chain_id).join("hello");
        let md = std::fs::metadata(&hello).unwrap();
        assert_eq!(md.permissions().mode() & 0o7777, 0o755);
        assert_eq!(std::fs::read(hello).unwrap(), elf());
    }
}
