//! The PostgreSQL harness the cluster suites stand on: a server per test on its own port,
//! answering and keeping what it committed, gone once the test drops it.

use vault_tests::postgres::Postgres;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_per_test_serves_commits_and_stops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let postgres = Postgres::start(dir.path());
    let (client, connection) = tokio_postgres::connect(&postgres.url(), tokio_postgres::NoTls)
        .await
        .expect("connect");
    let driver = tokio::spawn(connection);
    client
        .batch_execute("CREATE TABLE probe (id bigint PRIMARY KEY, body bytea NOT NULL)")
        .await
        .expect("create");
    client
        .execute(
            "INSERT INTO probe VALUES ($1, $2)",
            &[&1_i64, &b"sealed bytes".as_slice()],
        )
        .await
        .expect("insert");
    // The primary key is what makes a fork of the audit chain impossible in the cluster.
    let duplicate = client
        .execute(
            "INSERT INTO probe VALUES ($1, $2)",
            &[&1_i64, &b"other".as_slice()],
        )
        .await;
    assert!(duplicate.is_err(), "a second row under the same key");
    let row = client
        .query_one("SELECT body FROM probe WHERE id = $1", &[&1_i64])
        .await
        .expect("select");
    assert_eq!(row.get::<_, Vec<u8>>(0), b"sealed bytes");
    let version: String = client
        .query_one("SHOW server_version", &[])
        .await
        .expect("version")
        .get(0);
    assert!(version.starts_with("15"), "{version}");
    drop(client);
    let _ = driver.await;

    let port = postgres.port;
    drop(postgres);
    assert!(
        tokio_postgres::connect(
            &format!("postgresql://postgres@127.0.0.1:{port}/postgres"),
            tokio_postgres::NoTls
        )
        .await
        .is_err(),
        "the server outlived its test"
    );
}
