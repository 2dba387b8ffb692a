//! The PostgreSQL and SQLite migrations define the same schema: the same
//! tables, the same columns, and the same indexes (by table, columns and
//! uniqueness, primary keys and unique constraints included). Types differ
//! by design (UUID vs BLOB, TIMESTAMPTZ vs TEXT).

use std::collections::BTreeSet;

use plinth_tests::{Backend, TestDatabase};
use sqlx::{Connection, PgConnection, SqliteConnection};

/// (table, column)
type Columns = BTreeSet<(String, String)>;
/// (table, indexed columns in order, unique)
type Indexes = BTreeSet<(String, Vec<String>, bool)>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_migrations_define_the_same_tables_columns_and_indexes() {
    let postgres = TestDatabase::create(Backend::Postgres).await;
    let sqlite = TestDatabase::create(Backend::Sqlite).await;
    postgres.open_store().await;
    sqlite.open_store().await;

    let (postgres_columns, postgres_indexes) = postgres_schema(&postgres.url).await;
    let (sqlite_columns, sqlite_indexes) = sqlite_schema(&sqlite.url).await;

    assert!(postgres_columns.len() > 100, "the schema was read");
    assert_eq!(
        postgres_columns
            .symmetric_difference(&sqlite_columns)
            .collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "columns in one schema only"
    );
    assert_eq!(
        postgres_indexes
            .symmetric_difference(&sqlite_indexes)
            .collect::<Vec<_>>(),
        Vec::<&(String, Vec<String>, bool)>::new(),
        "indexes in one schema only"
    );
}

async fn postgres_schema(url: &str) -> (Columns, Indexes) {
    let mut connection = PgConnection::connect(url).await.unwrap();
    let columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations'",
    )
    .fetch_all(&mut connection)
    .await
    .unwrap();
    let indexes: Vec<(String, Vec<String>, bool)> = sqlx::query_as(
        "SELECT t.relname::text, array_agg(a.attname::text ORDER BY k.position), ix.indisunique \
         FROM pg_index ix \
         JOIN pg_class t ON t.oid = ix.indrelid \
         JOIN pg_class i ON i.oid = ix.indexrelid \
         JOIN pg_namespace n ON n.oid = t.relnamespace \
         CROSS JOIN LATERAL unnest(ix.indkey) WITH ORDINALITY AS k(attnum, position) \
         JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum \
         WHERE n.nspname = 'public' AND t.relname <> '_sqlx_migrations' \
         GROUP BY t.relname, i.relname, ix.indisunique",
    )
    .fetch_all(&mut connection)
    .await
    .unwrap();
    (columns.into_iter().collect(), indexes.into_iter().collect())
}

async fn sqlite_schema(url: &str) -> (Columns, Indexes) {
    let mut connection = SqliteConnection::connect(url).await.unwrap();
    let tables: Vec<(String,)> = sqlx::query_as(
        "SELECT name FROM sqlite_master WHERE type = 'table' \
         AND name <> '_sqlx_migrations' AND name NOT LIKE 'sqlite_%'",
    )
    .fetch_all(&mut connection)
    .await
    .unwrap();
    let mut columns = Columns::new();
    let mut indexes = Indexes::new();
    for (table,) in tables {
        let names: Vec<(String,)> = sqlx::query_as("SELECT name FROM pragma_table_info($1)")
            .bind(&table)
            .fetch_all(&mut connection)
            .await
            .unwrap();
        columns.extend(names.into_iter().map(|(column,)| (table.clone(), column)));
        let table_indexes: Vec<(String, bool)> =
            sqlx::query_as("SELECT name, \"unique\" FROM pragma_index_list($1)")
                .bind(&table)
                .fetch_all(&mut connection)
                .await
                .unwrap();
        for (index, unique) in table_indexes {
            let indexed: Vec<(String,)> =
                sqlx::query_as("SELECT name FROM pragma_index_info($1) ORDER BY seqno")
                    .bind(&index)
                    .fetch_all(&mut connection)
                    .await
                    .unwrap();
            let indexed = indexed.into_iter().map(|(column,)| column).collect();
            indexes.insert((table.clone(), indexed, unique));
        }
    }
    (columns, indexes)
}
