//! Test support: a fresh PostgreSQL database per test, dropped afterwards.
//!
//! The server comes from `GANTRY_TEST_DATABASE_URL` (a URL of any database on it, usually
//! `postgres`; `scripts/test.sh` sets it, starting a throwaway server where none runs), else
//! `postgres://postgres@127.0.0.1:5432/postgres`. Tests that need PostgreSQL fail, loudly,
//! when no server answers: they are never skipped.
#![allow(dead_code)]

use sqlx::Connection;

/// Where the tests find a server when `GANTRY_TEST_DATABASE_URL` is not set.
pub const DEFAULT_SERVER_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database `gantry_test_<random>` created for one test, dropped (with any connections
/// left to it) when this value is dropped.
pub struct TestDatabase {
    /// URL of the new database.
    pub url: String,
    /// Its name.
    pub name: String,
    server_url: String,
}

/// `url` naming the database `name` instead of its own (the query string is kept).
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..].find('/').map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{name}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// The server URL the tests use.
pub fn server_url() -> String {
    std::env::var("GANTRY_TEST_DATABASE_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_SERVER_URL.to_string())
}

async fn connect(url: &str) -> sqlx::PgConnection {
    match sqlx::PgConnection::connect(url).await {
        Ok(connection) => connection,
        Err(error) => panic!(
            "this test needs PostgreSQL, and none answers at {url}: {error}\n\
             run the tests with scripts/test.sh (it uses 127.0.0.1:5432 or starts a throwaway server), \
             or set GANTRY_TEST_DATABASE_URL to a server's URL"
        ),
    }
}

impl TestDatabase {
    /// Creates a fresh, empty database on the test server.
    pub async fn create() -> TestDatabase {
        let server_url = server_url();
        let name = format!("gantry_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = connect(&server_url).await;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|error| panic!("create database {name} on {server_url}: {error}"));
        let _ = admin.close().await;
        TestDatabase { url: with_database(&server_url, &name), name, server_url }
    }

    /// A connection to the database, for checks a test makes behind gantry's back.
    pub async fn connect(&self) -> sqlx::PgConnection {
        connect(&self.url).await
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop runs outside any async context the test may still be in: a thread of its own
        // with its own runtime.
        let (server_url, name) = (self.server_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async move {
                let mut admin = sqlx::PgConnection::connect(&server_url).await?;
                sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                    .execute(&mut admin)
                    .await?;
                admin.close().await
            })
        })
        .join();
        if let Ok(Err(error)) = dropped {
            eprintln!("warning: drop test database {}: {error}", self.name);
        }
    }
}
