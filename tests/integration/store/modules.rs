//! The module catalog in the store.

use chrono::Duration;
use plinth_platform::{
    clock,
    store::{
        Store, StoreError,
        modules::{
            self, DependencyRecord, ModuleFilter, ModuleRecord, ModuleStatus, ModuleVersionRecord,
        },
    },
};
use plinth_tests::Backend;

use super::{committed, event, fresh_store, platform_events};

crate::on_both_backends!(
    a_module_and_its_versions_read_back_as_written,
    a_version_is_registered_once,
    listings_filter_by_status_category_and_text_and_page_by_id,
    current_dependencies_follow_the_active_version_else_the_latest,
    a_deleted_module_leaves_listings_and_the_graph,
);

fn module(module_id: &str, category: &str, description: &str) -> ModuleRecord {
    let now = clock::now();
    ModuleRecord {
        module_id: module_id.to_owned(),
        display_name: format!("The {module_id} module"),
        description: description.to_owned(),
        category: category.to_owned(),
        status: ModuleStatus::Inactive,
        active_version: None,
        latest_version: "1.0.0".to_owned(),
        created_at: now,
        updated_at: now,
        deleted_at: None,
    }
}

fn version(module_id: &str, version: &str, minutes_ago: i64) -> ModuleVersionRecord {
    ModuleVersionRecord {
        module_id: module_id.to_owned(),
        version: version.to_owned(),
        manifest: format!("{module_id} {version}").into_bytes(),
        digest: format!("digest of {module_id} {version}"),
        registered_at: clock::now() - Duration::minutes(minutes_ago),
    }
}

fn dependency(from: &ModuleVersionRecord, depends_on: &str) -> DependencyRecord {
    DependencyRecord {
        module_id: from.module_id.clone(),
        version: from.version.clone(),
        depends_on: depends_on.to_owned(),
        requirement: ">=1".to_owned(),
        optional: false,
    }
}

/// A module with its versions (oldest first), each depending on `depends_on`.
async fn stored(
    store: &Store,
    record: &ModuleRecord,
    versions: &[ModuleVersionRecord],
    depends_on: &[&str],
) {
    committed(store, async |tx| {
        for (index, version) in versions.iter().enumerate() {
            let dependencies: Vec<DependencyRecord> = depends_on
                .iter()
                .map(|target| dependency(version, target))
                .collect();
            modules::register_version(
                tx,
                record,
                index == 0,
                version,
                &dependencies,
                event("registry.module.registered", None),
            )
            .await?;
        }
        Ok(())
    })
    .await
    .unwrap();
}

async fn updated(store: &Store, record: &ModuleRecord) {
    committed(store, async |tx| {
        modules::update_module(tx, record, event("registry.module.updated", None)).await
    })
    .await
    .unwrap();
}

async fn a_module_and_its_versions_read_back_as_written(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    let record = module("inventory", "operations", "Stock");
    let versions: Vec<ModuleVersionRecord> = (0..5)
        .map(|minor| version("inventory", &format!("1.{minor}.0"), 10 - minor))
        .collect();

    stored(&store, &record, &versions, &["finance"]).await;

    let read = store.modules.module("inventory").await.unwrap().unwrap();
    assert_eq!(read.module_id, record.module_id);
    assert_eq!(read.status, ModuleStatus::Inactive);
    let one = store
        .modules
        .version("inventory", "1.2.0")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (one.manifest, one.digest),
        (versions[2].manifest.clone(), versions[2].digest.clone())
    );
    let first_page = store
        .modules
        .list_versions("inventory", None, 2)
        .await
        .unwrap();
    let cursor = first_page
        .last()
        .map(|last| (last.registered_at, last.version.clone()));
    let second_page = store
        .modules
        .list_versions("inventory", cursor, 10)
        .await
        .unwrap();
    let newest_first: Vec<&str> = first_page
        .iter()
        .chain(&second_page)
        .map(|version| version.version.as_str())
        .collect();
    assert_eq!(newest_first, ["1.4.0", "1.3.0", "1.2.0", "1.1.0", "1.0.0"]);
    assert_eq!(platform_events(&store).await.len(), 5);
    assert_eq!(
        store.modules.version("inventory", "9.0.0").await.unwrap(),
        None
    );
    assert_eq!(store.modules.module("nothing").await.unwrap(), None);
    assert_eq!(
        store.modules.version_numbers("inventory").await.unwrap(),
        ["1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0"]
    );
}

async fn a_version_is_registered_once(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    let first = version("inventory", "1.0.0", 1);
    stored(
        &store,
        &module("inventory", "", ""),
        std::slice::from_ref(&first),
        &[],
    )
    .await;
    let mut again = first.clone();
    again.digest = "another manifest".to_owned();

    let refused = committed(&store, async |tx| {
        let module = module("inventory", "", "");
        let event = event("registry.module.registered", None);
        modules::register_version(tx, &module, false, &again, &[], event).await
    })
    .await;

    assert!(matches!(refused, Err(StoreError::Conflict)), "{refused:?}");
    let kept = store
        .modules
        .version("inventory", "1.0.0")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.digest, first.digest);
    assert_eq!(platform_events(&store).await.len(), 1);
}

async fn listings_filter_by_status_category_and_text_and_page_by_id(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    for (id, category, description) in [
        ("crm", "sales", "Contacts and deals"),
        ("finance", "accounting", "Ledgers, invoices: 100% audited"),
        ("inventory", "operations", "Stock LEVELS"),
        ("payroll", "accounting", "Salaries"),
    ] {
        stored(
            &store,
            &module(id, category, description),
            &[version(id, "1.0.0", 1)],
            &[],
        )
        .await;
    }
    let mut active = store.modules.module("payroll").await.unwrap().unwrap();
    active.status = ModuleStatus::Active;
    updated(&store, &active).await;
    let ids = |records: Vec<ModuleRecord>| -> Vec<String> {
        records.into_iter().map(|record| record.module_id).collect()
    };
    let listed = |filter: ModuleFilter| {
        let store = store.clone();
        async move { ids(store.modules.list_modules(&filter, 10).await.unwrap()) }
    };

    assert_eq!(
        listed(ModuleFilter {
            category: Some("accounting".into()),
            ..Default::default()
        })
        .await,
        ["finance", "payroll"]
    );
    assert_eq!(
        listed(ModuleFilter {
            status: Some(ModuleStatus::Active),
            ..Default::default()
        })
        .await,
        ["payroll"]
    );
    assert_eq!(
        listed(ModuleFilter {
            text: Some("levels".into()),
            ..Default::default()
        })
        .await,
        ["inventory"]
    );
    assert_eq!(
        listed(ModuleFilter {
            text: Some("100%".into()),
            ..Default::default()
        })
        .await,
        ["finance"]
    );
    assert_eq!(
        listed(ModuleFilter {
            text: Some("_".into()),
            ..Default::default()
        })
        .await,
        Vec::<String>::new()
    );
    assert_eq!(
        listed(ModuleFilter {
            after: Some("finance".into()),
            ..Default::default()
        })
        .await,
        ["inventory", "payroll"]
    );
}

async fn current_dependencies_follow_the_active_version_else_the_latest(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    let old = version("crm", "1.0.0", 2);
    let new = version("crm", "2.0.0", 1);
    stored(&store, &module("crm", "", ""), &[old], &["finance"]).await;
    let mut crm = store.modules.module("crm").await.unwrap().unwrap();
    crm.latest_version = "2.0.0".to_owned();
    committed(&store, async |tx| {
        let dependencies = [dependency(&new, "billing")];
        let event = event("registry.module.registered", None);
        modules::register_version(tx, &crm, false, &new, &dependencies, event).await
    })
    .await
    .unwrap();
    let targets = |store: Store| async move {
        store
            .modules
            .current_dependencies()
            .await
            .unwrap()
            .into_iter()
            .map(|dependency| dependency.depends_on)
            .collect::<Vec<_>>()
    };

    let of_latest = targets(store.clone()).await;
    crm.active_version = Some("1.0.0".to_owned());
    updated(&store, &crm).await;
    let of_active = targets(store.clone()).await;

    assert_eq!(of_latest, ["billing"]);
    assert_eq!(of_active, ["finance"]);
}

async fn a_deleted_module_leaves_listings_and_the_graph(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    stored(
        &store,
        &module("crm", "", ""),
        &[version("crm", "1.0.0", 1)],
        &["finance"],
    )
    .await;
    let mut crm = store.modules.module("crm").await.unwrap().unwrap();
    crm.deleted_at = Some(clock::now());

    updated(&store, &crm).await;

    let listed = store
        .modules
        .list_modules(&ModuleFilter::default(), 10)
        .await
        .unwrap();
    assert_eq!(listed, []);
    assert_eq!(store.modules.current_dependencies().await.unwrap(), []);
    assert_eq!(
        store.modules.version_numbers("crm").await.unwrap(),
        Vec::<String>::new()
    );
    let kept = store.modules.module("crm").await.unwrap().unwrap();
    assert!(kept.deleted_at.is_some());
}
