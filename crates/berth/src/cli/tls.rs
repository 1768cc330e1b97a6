//! `berth tls init DIR`: a CA, a server certificate and a client
//! certificate for a quick mutual-TLS set-up, in the files dockerd and the
//! docker CLI read (`ca.pem`, `server-cert.pem`, `server-key.pem`,
//! `cert.pem`, `key.pem`). A quick start, not a PKI: the CA's key sits
//! beside the certificates (keep it elsewhere, or make the certificates
//! with your own CA, for anything that lasts).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

#[derive(Debug, Subcommand)]
pub enum TlsCommand {
    /// Make a CA, a server and a client certificate in DIR.
    Init(InitArgs),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The folder to write into (made if missing; existing files are not replaced).
    dir: PathBuf,
    /// A name or IP address the server is reached by (repeatable;
    /// localhost, 127.0.0.1, ::1 and this host's name are always in).
    #[arg(long = "name", value_name = "NAME|IP")]
    hosts: Vec<String>,
    /// Days the certificates are valid.
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3650))]
    days: u32,
}

/// The files written, in order.
pub(crate) const FILES: [&str; 6] = [
    "ca.pem",
    "ca-key.pem",
    "server-cert.pem",
    "server-key.pem",
    "cert.pem",
    "key.pem",
];

pub fn run(cmd: TlsCommand) -> i32 {
    let TlsCommand::Init(args) = cmd;
    match init(&args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("berth tls init: {e:#}");
            1
        }
    }
}

fn init(args: &InitArgs) -> Result<()> {
    if let Some(f) = FILES.iter().find(|f| args.dir.join(f).exists()) {
        bail!("{} exists: nothing was written", args.dir.join(f).display());
    }
    let pems = make(&server_names(&args.hosts), args.days)?;
    std::fs::create_dir_all(&args.dir).with_context(|| format!("making {}", args.dir.display()))?;
    for (name, pem) in FILES.iter().zip(pems) {
        let private = name.ends_with("key.pem");
        write_new(
            &args.dir.join(name),
            &pem,
            if private { 0o600 } else { 0o644 },
        )?;
    }
    let d = args.dir.display();
    println!("wrote {} into {d}", FILES.join(", "));
    println!("daemon: berth daemon -H tcp://0.0.0.0:2376 --tlsverify --tlscacert {d}/ca.pem --tlscert {d}/server-cert.pem --tlskey {d}/server-key.pem");
    println!("client: docker --tlsverify --tlscacert {d}/ca.pem --tlscert {d}/cert.pem --tlskey {d}/key.pem -H tcp://HOST:2376 version");
    Ok(())
}

/// The names the server certificate is for: the defaults and `extra`.
pub(crate) fn server_names(extra: &[String]) -> Vec<String> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    if let Ok(host) = nix::unistd::gethostname() {
        names.push(host.to_string_lossy().into_owned());
    }
    for n in extra {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    names
}

fn validity(params: &mut CertificateParams, days: u32) {
    // Strict verifiers (urllib3 2, OpenSSL's -x509_strict) want the key
    // identifier of the issuer in every certificate it signed.
    params.use_authority_key_identifier_extension = !matches!(params.is_ca, IsCa::Ca(_));
    let now = time::OffsetDateTime::now_utc();
    // An hour back: clocks of the two hosts differ a little.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(days.into());
}

/// PEM texts in [`FILES`]' order.
pub(crate) fn make(server_names: &[String], days: u32) -> Result<Vec<String>> {
    let ca_key = KeyPair::generate().context("CA key")?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.distinguished_name.push(DnType::CommonName, "berth CA");
    validity(&mut ca, days);
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, &ca_key);

    let server_key = KeyPair::generate().context("server key")?;
    let mut server = CertificateParams::new(Vec::<String>::new())?;
    server
        .distinguished_name
        .push(DnType::CommonName, "berth daemon");
    for name in server_names {
        server.subject_alt_names.push(match name.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(name.clone().try_into()?),
        });
    }
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity(&mut server, days);
    let server_cert = server.signed_by(&server_key, &issuer)?;

    let client_key = KeyPair::generate().context("client key")?;
    let mut client = CertificateParams::new(Vec::<String>::new())?;
    client
        .distinguished_name
        .push(DnType::CommonName, "berth client");
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    validity(&mut client, days);
    let client_cert = client.signed_by(&client_key, &issuer)?;

    Ok(vec![
        ca_cert.pem(),
        ca_key.serialize_pem(),
        server_cert.pem(),
        server_key.serialize_pem(),
        client_cert.pem(),
        client_key.serialize_pem(),
    ])
}

/// Writes a new file with `mode` (never over an existing one).
fn write_new(path: &Path, text: &str, mode: u32) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_always_include_loopback() {
        let names = server_names(&["db1.example".into(), "localhost".into()]);
        assert_eq!(&names[..3], ["localhost", "127.0.0.1", "::1"]);
        assert_eq!(names.iter().filter(|n| *n == "localhost").count(), 1);
        assert!(names.contains(&"db1.example".to_string()));
    }

    #[test]
    fn makes_a_chain_rustls_accepts() {
        let pems = make(&server_names(&[]), 30).unwrap();
        assert_eq!(pems.len(), 6);
        assert!(pems[0].starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(pems[1].contains("PRIVATE KEY"));
    }
}
