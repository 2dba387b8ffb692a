//! Compiles every proto under `../proto` with protox (no system `protoc`) into
//! prost messages and tonic stubs, and writes the descriptor set that the
//! servers register for reflection.

use std::{env, path::PathBuf};

const PROTO_ROOT: &str = "../proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PROTO_ROOT}");
    let proto_files = list_proto_files(PROTO_ROOT.as_ref())?;
    for file in &proto_files {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    let file_descriptors = protox::compile(&proto_files, [PROTO_ROOT])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("plinth_descriptor.bin"),
        prost::Message::encode_to_vec(&file_descriptors),
    )?;

    tonic_prost_build::configure()
        // Ordered maps: deterministic encodings, and small maps without a
        // hasher to seed on every message.
        .btree_map(".")
        .build_client(true)
        .generate_default_stubs(true)
        .compile_fds(file_descriptors)?;
    Ok(())
}

fn list_proto_files(dir: &std::path::Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            files.extend(list_proto_files(&path)?);
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}
