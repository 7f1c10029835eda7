//! The PostgreSQL store over TLS: with `tls_ca` set, a connection is TLS (rustls) verified
//! against that CA, or none is made — no fallback to plaintext on a server (or a man in the
//! middle) that offers no TLS, no session with a server certified by another CA.

use vault_daemon::store::postgres::{PgDatabase, PgOptions};
use vault_tests::pki::Pki;
use vault_tests::postgres::{Postgres, runtime};

fn with_ca(url: String, ca: &std::path::Path) -> PgOptions {
    let mut options = PgOptions::new(url);
    options.tls_ca = Some(ca.to_owned());
    options.connect_timeout = std::time::Duration::from_secs(2);
    options
}

#[test]
fn the_store_speaks_tls_to_a_server_of_its_ca_and_to_no_other() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki_dir = dir.path().join("pki");
    std::fs::create_dir_all(&pki_dir).expect("pki dir");
    let pki = Pki::create(&pki_dir);
    let server = Postgres::start(&dir.path().join("tls"));
    server.enable_tls(&pki.server.0, &pki.server.1);
    server.create_database("locker");
    let runtime = runtime();

    let database = runtime
        .block_on(PgDatabase::open(with_ca(server.url_of("locker"), &pki.ca)))
        .expect("a TLS session with the server its CA certified");
    let encrypted = server.sql(
        "postgres",
        "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE ssl AND application_name = 'mynumber-locker'",
    );
    assert_ne!(encrypted, "0", "the store's connections use TLS");
    let plain = server.sql(
        "postgres",
        "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE NOT ssl AND application_name = 'mynumber-locker'",
    );
    assert_eq!(plain, "0", "no plaintext connection");
    drop(database);

    // A server certified by another CA (a man in the middle with his own certificate).
    let other_dir = dir.path().join("other-pki");
    std::fs::create_dir_all(&other_dir).expect("other pki dir");
    let other = Pki::create(&other_dir);
    let refused = runtime.block_on(PgDatabase::open(with_ca(
        server.url_of("locker"),
        &other.ca,
    )));
    assert!(refused.is_err(), "a server of another CA was accepted");

    // A server without TLS: refused, not used in plaintext.
    let plaintext = Postgres::start(&dir.path().join("plain"));
    plaintext.create_database("locker");
    let refused = runtime.block_on(PgDatabase::open(with_ca(
        plaintext.url_of("locker"),
        &pki.ca,
    )));
    assert!(
        refused.is_err(),
        "a server without TLS was used in plaintext"
    );
    assert_eq!(
        plaintext.sql(
            "locker",
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'locker'"
        ),
        "0",
        "nothing was written to it"
    );
}
