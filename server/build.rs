//! Generates the gRPC code for `proto/users/status.proto` with protox (a pure-Rust
//! protobuf compiler: no `protoc` on the machine) and tonic-prost-build, and writes the
//! encoded descriptor set that the reflection service serves.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../proto");
    let file = root.join("users/status.proto");
    println!("cargo:rerun-if-changed={}", file.display());
    let fds = protox::compile([&file], [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("users_status_descriptor.bin"), prost::Message::encode_to_vec(&fds))?;
    tonic_prost_build::configure().build_transport(false).compile_fds(fds)?;
    Ok(())
}
