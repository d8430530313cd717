//! `jetshop openapi`: the gateway's OpenAPI 3 spec as an artifact, printed
//! or written to a file, without starting anything.

use anyhow::Context;

use crate::args::OpenapiArgs;

/// Print the spec, or write it to `--out`.
pub fn run(args: &OpenapiArgs) -> anyhow::Result<()> {
    let mut spec = jetshop_gateway::openapi_json();
    if !spec.ends_with('\n') {
        spec.push('\n');
    }
    match &args.out {
        Some(path) => {
            std::fs::write(path, spec).with_context(|| format!("cannot write {}", path.display()))
        }
        None => {
            print!("{spec}");
            Ok(())
        }
    }
}
