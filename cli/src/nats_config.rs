//! `jetshop nats-config`: the NATS server's users, permissions and TLS
//! material, derived from the contracts so they cannot drift from the
//! subjects.
//!
//! It writes, under `--out`:
//!
//! - `ca.pem`, `ca-key.pem`: a development CA (keep its key to yourself;
//!   neither the server nor the parts need it);
//! - `server.pem`, `server-key.pem`: the server's certificate for `--host`;
//! - `auth.conf`: a `tls` block that requires TLS and a client certificate
//!   from that CA, and an `authorization` block with one nkey user per
//!   part whose allow-lists come from [`jetshop_contracts::access`], plus
//!   `ops` (every subject: `jetshop dlq`, `sagas`, `seed`, the nats CLI).
//!   Include it in the server's configuration;
//! - `<part>/`: the part's nkey seed (`<part>.nk`), its client certificate
//!   and key, and `nats.env` with the `NATS_*` variables that point
//!   `jetshop run <part>` at them.
//!
//! Keys and certificates already there are kept, so running it again
//! after an upgrade rewrites only `auth.conf` with the new permissions;
//! clients keep their credentials. Delete a file to have it made anew.

use std::{
    fs,
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use anyhow::Context;
use jetshop_contracts::access::{self, Permissions};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::args::NatsConfigArgs;

/// The operator's user: every subject, for tools rather than services.
pub const OPS: &str = "ops";

/// One NATS user as written into `auth.conf`.
struct User {
    name: String,
    nkey: String,
    permissions: Option<Permissions>,
}

/// Write (or complete) the security material under `args.out`.
pub fn run(args: &NatsConfigArgs) -> anyhow::Result<()> {
    let out = absolute(&args.out)?;
    fs::create_dir_all(&out).with_context(|| format!("create {}", out.display()))?;
    let ca_key = key_pair(&out.join("ca-key.pem"))?;
    let ca = Issuer::new(ca_params()?, ca_key);
    if !out.join("ca.pem").exists() {
        let cert = ca_params()?.self_signed(ca.key())?;
        write(&out.join("ca.pem"), &cert.pem(), false)?;
    }
    let mut server = CertificateParams::new(args.hosts.clone())?;
    server
        .distinguished_name
        .push(DnType::CommonName, "jetshop nats-server");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf(&out, "server", server, &ca)?;

    let mut users = Vec::new();
    let parts = access::parts();
    let names = parts
        .iter()
        .map(|a| (a.part, Some(a.permissions())))
        .chain([(OPS, None)]);
    for (part, permissions) in names {
        let dir = out.join(part);
        fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let mut client = CertificateParams::new(Vec::<String>::new())?;
        client.distinguished_name.push(DnType::CommonName, part);
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        leaf(&dir, part, client, &ca)?;
        let nkey = nkey(&dir.join(format!("{part}.nk")))?;
        write(&dir.join("nats.env"), &env_file(&out, part), false)?;
        users.push(User {
            name: part.to_owned(),
            nkey,
            permissions,
        });
    }
    write(&out.join("auth.conf"), &auth_conf(&out, &users), false)?;
    println!(
        "NATS security for {} parts in {}:\n  \
         server: include {} in its configuration\n  \
         parts:  set -a; . {}/<part>/nats.env  (or the --nats-nkey-file and --nats-tls-* flags)\n  \
         ops:    jetshop dlq ls --nats-url tls://{}:4222 with {}/ops/nats.env",
        users.len(),
        out.display(),
        out.join("auth.conf").display(),
        out.display(),
        args.hosts.first().map_or("127.0.0.1", String::as_str),
        out.display(),
    );
    Ok(())
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    // The server and the parts read these paths from other working
    // directories: every path written into a file is absolute.
    Ok(if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir()?.join(path)
    })
}

/// The CA's parameters, the same at every run so a kept `ca-key.pem`
/// signs certificates whose issuer matches the kept `ca.pem`.
fn ca_params() -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params
        .distinguished_name
        .push(DnType::CommonName, "jetshop development CA");
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params)
}

/// The key in `path`, or a new one written there.
fn key_pair(path: &Path) -> anyhow::Result<KeyPair> {
    if path.exists() {
        let pem = fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        return KeyPair::from_pem(&pem).with_context(|| format!("parse {}", path.display()));
    }
    let key = KeyPair::generate()?;
    write(path, &key.serialize_pem(), true)?;
    Ok(key)
}

/// `<dir>/<name>.pem` and `<name>-key.pem`, unless the certificate exists.
fn leaf(
    dir: &Path,
    name: &str,
    params: CertificateParams,
    ca: &Issuer<'_, KeyPair>,
) -> anyhow::Result<()> {
    let cert_path = dir.join(format!("{name}.pem"));
    let key = key_pair(&dir.join(format!("{name}-key.pem")))?;
    if !cert_path.exists() {
        let cert = params.signed_by(&key, ca)?;
        write(&cert_path, &cert.pem(), false)?;
    }
    Ok(())
}

/// The public key of the nkey seed in `path`, made first when missing.
fn nkey(path: &Path) -> anyhow::Result<String> {
    let pair = if path.exists() {
        let seed = fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        nkeys::KeyPair::from_seed(seed.trim())
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
    } else {
        let pair = nkeys::KeyPair::new_user();
        let seed = pair.seed().map_err(|e| anyhow::anyhow!("nkey seed: {e}"))?;
        write(path, &format!("{seed}\n"), true)?;
        pair
    };
    Ok(pair.public_key())
}

fn write(path: &Path, content: &str, secret: bool) -> anyhow::Result<()> {
    // Secrets are readable by their owner only, from the first byte on.
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(path)
        .with_context(|| format!("write {}", path.display()))?;
    file.write_all(content.as_bytes())
        .with_context(|| format!("write {}", path.display()))
}

fn env_file(out: &Path, part: &str) -> String {
    let dir = out.join(part);
    let inbox = if part == OPS {
        "_INBOX".to_owned()
    } else {
        access::inbox_prefix(part)
    };
    format!(
        "# jetshop run {part}: its NATS credentials (written by jetshop nats-config)\n\
         NATS_NKEY_FILE={}\nNATS_TLS_CA={}\nNATS_TLS_CERT={}\nNATS_TLS_KEY={}\nNATS_INBOX_PREFIX={inbox}\n",
        dir.join(format!("{part}.nk")).display(),
        out.join("ca.pem").display(),
        dir.join(format!("{part}.pem")).display(),
        dir.join(format!("{part}-key.pem")).display(),
    )
}

fn quoted(list: &[String]) -> String {
    list.iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

fn auth_conf(out: &Path, users: &[User]) -> String {
    let mut conf = format!(
        "# Written by `jetshop nats-config` from the contracts crate; run it again\n\
         # rather than editing this file. Include it in the server's configuration.\n\
         tls {{\n  \
           cert_file: \"{}\"\n  \
           key_file: \"{}\"\n  \
           ca_file: \"{}\"\n  \
           # mTLS: every client shows a certificate issued by the jetshop CA.\n  \
           verify: true\n  \
           timeout: 2\n\
         }}\n\
         authorization {{\n  users: [\n",
        out.join("server.pem").display(),
        out.join("server-key.pem").display(),
        out.join("ca.pem").display(),
    );
    for user in users {
        conf.push_str(&format!(
            "    # {}\n    {{\n      nkey: \"{}\"\n",
            user.name, user.nkey
        ));
        match &user.permissions {
            Some(p) => conf.push_str(&format!(
                "      permissions: {{\n        \
                   publish: {{ allow: [{}] }}\n        \
                   subscribe: {{ allow: [{}] }}\n        \
                   # Answers to the requests it serves.\n        \
                   allow_responses: true\n      \
                 }}\n",
                quoted(&p.publish),
                quoted(&p.subscribe),
            )),
            None => conf.push_str("      # Unrestricted: operators' tools.\n"),
        }
        conf.push_str("    }\n");
    }
    conf.push_str("  ]\n}\n");
    conf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_gets_a_user_with_its_own_permissions_and_ops_gets_all() {
        let dir = tempfile::tempdir().unwrap();
        let args = NatsConfigArgs {
            out: dir.path().to_owned(),
            hosts: vec!["127.0.0.1".into(), "localhost".into()],
        };
        run(&args).unwrap();
        let conf = fs::read_to_string(dir.path().join("auth.conf")).unwrap();
        for a in access::parts() {
            assert!(conf.contains(&format!("# {}\n", a.part)), "{}", a.part);
            let env = fs::read_to_string(dir.path().join(a.part).join("nats.env")).unwrap();
            assert!(env.contains(&format!("NATS_INBOX_PREFIX=_INBOX_{}", a.part)));
        }
        assert!(conf.contains("\"payments.events.>\""));
        assert!(conf.contains("verify: true"));
        assert_eq!(conf.matches("nkey: \"U").count(), access::parts().len() + 1);
        let seed = dir.path().join("payments/payments.nk");
        let mode = fs::metadata(&seed).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o077,
            0,
            "the seed is readable by others"
        );

        // A second run keeps every key and certificate.
        let before = fs::read_to_string(&seed).unwrap();
        let cert = fs::read_to_string(dir.path().join("server.pem")).unwrap();
        run(&args).unwrap();
        assert_eq!(fs::read_to_string(&seed).unwrap(), before);
        assert_eq!(
            fs::read_to_string(dir.path().join("server.pem")).unwrap(),
            cert
        );
        assert_eq!(
            fs::read_to_string(dir.path().join("auth.conf")).unwrap(),
            conf
        );
    }
}
