//! Every message's shape against its checked-in snapshot in `contracts/schemas/`.
//!
//! A breaking change fails here. A compatible change (an optional field
//! added) passes but leaves the snapshot stale; refresh snapshots with
//! `UPDATE_SNAPSHOTS=1 cargo test -p jetshop-contracts --test contract_snapshots`
//! and commit them. A breaking change needs a new `VERSION` (and an upcaster),
//! which gets a new snapshot file beside the old one.

use std::path::PathBuf;

use jetshop_contracts::schema::{Shape, breaking_changes, registry};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas")
}

#[test]
fn every_message_matches_its_snapshot() {
    let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some();
    let mut failures = Vec::new();
    for shape in registry() {
        let path = dir().join(shape.file_name());
        let pinned: Option<Shape> = std::fs::read(&path)
            .ok()
            .map(|b| serde_json::from_slice(&b).expect("snapshot is valid JSON"));
        match pinned {
            Some(old) => {
                let problems = breaking_changes(&old, &shape);
                if !problems.is_empty() {
                    failures.push(format!("{}: {}", shape.file_name(), problems.join("; ")));
                } else if update && old != shape {
                    write(&path, &shape);
                }
            }
            None if update => write(&path, &shape),
            None => failures.push(format!(
                "{}: no snapshot; run with UPDATE_SNAPSHOTS=1 and commit it",
                shape.file_name()
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "breaking contract changes:\n{}",
        failures.join("\n")
    );
}

#[test]
fn no_snapshot_is_orphaned() {
    // A snapshot whose message left the registry means a message type was
    // deleted while old readers or stored events may still carry it.
    let known: Vec<String> = registry().iter().map(Shape::file_name).collect();
    for entry in std::fs::read_dir(dir()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(
            known.contains(&name),
            "snapshot {name} has no message in the registry"
        );
    }
}

fn write(path: &std::path::Path, shape: &Shape) {
    let mut text = serde_json::to_string_pretty(shape).unwrap();
    text.push('\n');
    std::fs::write(path, text).unwrap();
}
