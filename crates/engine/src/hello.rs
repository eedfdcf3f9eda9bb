//! The `hello-world` image built into the binary: a tiny static x86_64 ELF (hand-assembled: one
//! write(2) and one exit(2)) printing a greeting that explains what just happened, in a one-layer
//! image tagged `hello-world:latest`. Created at engine start if missing, byte-identical every time
//! (fixed mtimes and created date), so its id is stable.

use crate::images::ImageService;
use crate::Result;

/// The greeting the container prints.
pub const GREETING: &str = "\nHello from berth!\nThis message shows that your installation appears to be working correctly.\n\nTo generate this message, berth took the following steps:\n 1. The berth client contacted the berth engine.\n 2. The engine found the \"hello-world\" image built into it (no network was needed).\n 3. The engine created a new container from that image, in its own namespaces and cgroup,\n    which runs the executable that produces the output you are currently reading.\n 4. The engine streamed that output to the berth client, which sent it to your terminal.\n\nTo try something more ambitious, you can run a shell in a container with:\n $ berth run -it busybox sh\n\nThe docker CLI works too: DOCKER_HOST=unix:///run/berth/berth.sock docker run hello-world\n\n";

/// Make sure `hello-world:latest` exists (do nothing if the tag points anywhere already).
pub fn ensure(images: &ImageService) -> Result<()> {
    todo!("{:p}", images)
}
