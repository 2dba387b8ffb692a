//! Signing keys: rotation retires the previous key; retired keys stay
//! published for their grace.

use chrono::Duration;
use plinth_platform::{
    clock,
    store::signing_keys::{self, SigningKeyRecord},
};
use plinth_tests::Backend;

use super::{committed, event, fresh_store, platform_events};

crate::on_both_backends!(
    rotating_in_retires_the_previous_key_which_stays_published_within_grace,
    the_newest_key_is_found_even_when_retired,
);

fn key(kid: &str, created_at: chrono::DateTime<chrono::Utc>) -> SigningKeyRecord {
    SigningKeyRecord {
        kid: kid.to_owned(),
        algorithm: "EdDSA".to_owned(),
        public_key: vec![1; 32],
        encrypted_private_key: vec![2; 60],
        created_at,
        retired_at: None,
    }
}

async fn rotate_in(store: &plinth_platform::store::Store, key: &SigningKeyRecord) {
    committed(store, async |tx| {
        signing_keys::rotate_in(tx, key, event("auth.signing_key.rotated", None)).await
    })
    .await
    .unwrap();
}

async fn rotating_in_retires_the_previous_key_which_stays_published_within_grace(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    let first = key("first", clock::now() - Duration::minutes(1));
    let second = key("second", clock::now());
    rotate_in(&store, &first).await;
    rotate_in(&store, &second).await;

    let within_grace = store
        .signing_keys
        .published(second.created_at - Duration::seconds(1))
        .await
        .unwrap();
    let past_grace = store
        .signing_keys
        .published(second.created_at)
        .await
        .unwrap();

    let kids =
        |keys: &[SigningKeyRecord]| keys.iter().map(|key| key.kid.clone()).collect::<Vec<_>>();
    assert_eq!(kids(&within_grace), ["second", "first"]);
    assert_eq!(within_grace[1].retired_at, Some(second.created_at));
    assert_eq!(kids(&past_grace), ["second"]);
    assert_eq!(platform_events(&store).await.len(), 2);
}

async fn the_newest_key_is_found_even_when_retired(backend: Backend) {
    let (_database, store) = fresh_store(backend).await;
    assert_eq!(store.signing_keys.newest().await.unwrap(), None);
    let only = key("only", clock::now());
    rotate_in(&store, &only).await;

    assert_eq!(store.signing_keys.newest().await.unwrap(), Some(only));
}
