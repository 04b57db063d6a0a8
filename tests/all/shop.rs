//! The shop example's services (`functions/samples/users`, `catalog`, `orders`,
//! `inventory`, `notifier`) end to end: accounts and tokens, products and
//! stock, orders behind bearer tokens that reserve stock through an in-process
//! service call, and the `orders.created` events two queue functions handle.

use nimbus::backend::Consumer;
use nimbus_tests::{EVENTUALLY, TestApp, captured_logs, eventually, json};
use serde_json::{Value, json};

/// The signing key the tests use in place of `{{ env.SHOP_SIGNING_KEY }}`.
const SIGNING_KEY: &str = "shop-test-signing-key";

/// The shop's manifest, `examples/shop/nimbus.toml` itself, with the signing
/// key written in (the `{{ env.* }}` template is covered by the config tests),
/// written into `dir` with its schema files. Its admin is the user `admin`.
fn manifest(dir: &std::path::Path) -> String {
    nimbus_tests::example_manifest("shop", dir, &[("{{ env.SHOP_SIGNING_KEY }}", SIGNING_KEY)])
}

/// The queue function `function` of the shop, as the broker knows it.
fn consumer(function: &str) -> Consumer {
    Consumer {
        app: "shop".into(),
        function: function.into(),
    }
}

const PASSWORD: &str = "correct horse battery";

/// A running shop and the calls the tests make on it.
struct Shop {
    app: TestApp,
    /// A token of `admin`, who has the `admin` role the catalog's writes need.
    admin: String,
}

impl Shop {
    async fn start() -> Shop {
        let dir = tempfile::tempdir().expect("tempdir");
        let manifest = manifest(dir.path());
        let app = TestApp::start_in(dir, &manifest, Default::default()).await;
        let mut shop = Shop {
            app,
            admin: String::new(),
        };
        shop.admin = shop.user("admin").await;
        shop
    }

    async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.app
            .client
            .post(self.app.url(path))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    async fn post_as(&self, token: &str, path: &str, body: &Value) -> reqwest::Response {
        self.app
            .client
            .post(self.app.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    async fn register(&self, username: &str) {
        let response = self
            .post(
                "/users/register",
                &json!({"username": username, "password": PASSWORD}),
            )
            .await;
        assert_eq!(response.status(), 201);
        assert_eq!(json(response).await, json!({"username": username}));
    }

    /// Registers `username` and logs in; returns the token.
    async fn user(&self, username: &str) -> String {
        self.register(username).await;
        let response = self
            .post(
                "/users/login",
                &json!({"username": username, "password": PASSWORD}),
            )
            .await;
        assert_eq!(response.status(), 200);
        let body = json(response).await;
        assert_eq!(body["expires_in"], 3600);
        body["token"].as_str().expect("a token").to_owned()
    }

    /// Creates a product as the admin; returns it as answered.
    async fn product(&self, name: &str, price_cents: i64, stock: i64) -> Value {
        let response = self
            .app
            .client
            .post(self.app.url("/products"))
            .bearer_auth(&self.admin)
            .json(&json!({"name": name, "price_cents": price_cents, "stock": stock}))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 201);
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        let product = json(response).await;
        assert_eq!(location, format!("/products/{}", product["id"]));
        product
    }

    async fn stock(&self, product: &Value) -> i64 {
        let response = self.app.get(&format!("/products/{}", product["id"])).await;
        assert_eq!(response.status(), 200);
        json(response).await["stock"].as_i64().unwrap()
    }

    async fn order(&self, token: &str, product_id: &Value, quantity: i64) -> reqwest::Response {
        self.app
            .client
            .post(self.app.url("/orders"))
            .bearer_auth(token)
            .json(&json!({"product_id": product_id, "quantity": quantity}))
            .send()
            .await
            .expect("request")
    }

    /// What `inventory` has recorded as reserved of `product`.
    async fn reserved(&self, product: &Value) -> i64 {
        let response = self.app.get(&format!("/inventory/{}", product["id"])).await;
        assert_eq!(response.status(), 200);
        let body = json(response).await;
        assert_eq!(body["product_id"], product["id"]);
        body["reserved"].as_i64().expect("a number")
    }

    /// The notifications `notifier` has recorded for `user`.
    async fn notifications(&self, user: &str) -> Vec<Value> {
        let response = self.app.get(&format!("/notifications?user={user}")).await;
        assert_eq!(response.status(), 200);
        json(response).await.as_array().expect("an array").clone()
    }

    /// Waits until `function` has nothing left to handle: no message ready,
    /// delayed for a retry or being handled.
    async fn drained(&self, function: &str) {
        let queue = self.app.app.backends().queue.clone();
        eventually(
            &format!("`{function}` to handle every message"),
            EVENTUALLY,
            || async {
                let stats = queue.stats(&consumer(function)).await.unwrap();
                (stats.ready + stats.delayed + stats.in_flight == 0).then_some(())
            },
        )
        .await;
    }

    async fn get_as(&self, token: &str, path: &str) -> reqwest::Response {
        self.app
            .client
            .get(self.app.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }
}

/// The `message` of a JSON error response, after checking its status.
async fn error(response: reqwest::Response, status: u16) -> String {
    assert_eq!(response.status(), status);
    let body = json(response).await;
    body["message"].as_str().expect("a message").to_owned()
}

#[tokio::test]
async fn a_user_registers_logs_in_and_orders_a_product() {
    let logs = captured_logs();
    let shop = Shop::start().await;
    let token = shop.user("ada_buyer").await;
    let tea = shop.product("Green tea", 450, 10).await;
    let mug = shop.product("Mug", 1200, 3).await;
    assert_eq!(
        tea,
        json!({"id": 1, "name": "Green tea", "price_cents": 450, "stock": 10})
    );

    let response = shop
        .app
        .client
        .post(shop.app.url("/orders"))
        .bearer_auth(&token)
        .header("x-request-id", "shop-order-ada-1")
        .json(&json!({"product_id": tea["id"], "quantity": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["x-request-id"], "shop-order-ada-1");
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let order = json(response).await;
    assert_eq!(order["user"], "ada_buyer");
    assert_eq!(order["product_id"], tea["id"]);
    assert_eq!(order["quantity"], 3);
    assert_eq!(order["unit_price_cents"], 450);
    assert_eq!(order["total_cents"], 1350);
    let created_at = order["created_at"].as_str().unwrap();
    assert!(
        created_at.len() == 20 && created_at.ends_with('Z'),
        "{created_at}"
    );
    assert_eq!(location, format!("/orders/{}", order["id"]));

    // The catalog's stock went down, and only the ordered product's.
    assert_eq!(shop.stock(&tea).await, 7);
    assert_eq!(shop.stock(&mug).await, 3);
    // The catalog was called with the order's request id.
    let catalog_line = logs
        .lines()
        .into_iter()
        .find(|line| line.contains("shop-order-ada-1") && line.contains(r#""function":"catalog""#));
    assert!(
        catalog_line.is_some_and(|line| line.contains("reserved 3 of product 1")),
        "no catalog log line with the order's request id"
    );

    let read = shop.get_as(&token, &location).await;
    assert_eq!(read.status(), 200);
    assert_eq!(json(read).await, order);

    let second = shop.order(&token, &mug["id"], 1).await;
    assert_eq!(second.status(), 201);
    let second = json(second).await;
    let list = shop.get_as(&token, "/orders").await;
    assert_eq!(list.status(), 200);
    assert_eq!(json(list).await, json!([order, second]));
}

#[tokio::test]
async fn accounts_are_checked_and_logins_say_nothing_about_who_exists() {
    let shop = Shop::start().await;
    shop.register("bea_accounts").await;

    let taken = shop
        .post(
            "/users/register",
            &json!({"username": "bea_accounts", "password": "another password"}),
        )
        .await;
    assert!(error(taken, 409).await.contains("taken"));

    let bad_bodies = [
        (json!({"username": "Bea", "password": PASSWORD}), "username"),
        (json!({"username": "be", "password": PASSWORD}), "username"),
        (
            json!({"username": "bea-2", "password": PASSWORD}),
            "username",
        ),
        (
            json!({"username": "bea_2", "password": "short"}),
            "password",
        ),
        (json!({"username": "bea_2"}), "password"),
    ];
    for (body, field) in bad_bodies {
        let response = shop.post("/users/register", &body).await;
        let message = error(response, 400).await;
        assert!(message.contains(field), "{body}: {message}");
    }
    let not_json = shop
        .app
        .client
        .post(shop.app.url("/users/register"))
        .body("{\"username\": ")
        .send()
        .await
        .unwrap();
    error(not_json, 400).await;

    let wrong_password = shop
        .post(
            "/users/login",
            &json!({"username": "bea_accounts", "password": "not the password"}),
        )
        .await;
    let unknown_user = shop
        .post(
            "/users/login",
            &json!({"username": "nobody_here", "password": PASSWORD}),
        )
        .await;
    let invalid_name = shop
        .post(
            "/users/login",
            &json!({"username": "NOT A NAME", "password": PASSWORD}),
        )
        .await;
    let messages = [
        error(wrong_password, 401).await,
        error(unknown_user, 401).await,
        error(invalid_name, 401).await,
    ];
    assert_eq!(messages[0], messages[1]);
    assert_eq!(messages[1], messages[2]);
}

#[tokio::test]
async fn tokens_carry_the_claims_and_admins_their_role() {
    let shop = Shop::start().await;
    let claims = token_claims(&shop.user("ivy_claims").await);
    assert_eq!(claims["sub"], "ivy_claims");
    assert_eq!(claims["iss"], "shop-users");
    assert_eq!(claims["aud"], "shop");
    assert_eq!(claims["scope"], "orders:write");
    let lifetime = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
    assert_eq!(lifetime, 3600);
    assert_eq!(claims.get("roles"), None);

    // `admin` is listed in the config `admins` (and registered at start).
    let admin = token_claims(&shop.admin);
    assert_eq!(admin["roles"], json!(["admin"]));
}

/// The claims of a JWT, decoded from base64url without checking anything.
fn token_claims(token: &str) -> Value {
    let part = token.split('.').nth(1).expect("a JWT");
    let (mut bytes, mut buffer, mut bits) = (Vec::new(), 0u32, 0);
    for c in part.bytes() {
        let sextet = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => panic!("not base64url: {part}"),
        };
        buffer = (buffer << 6) | u32::from(sextet);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            bytes.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    serde_json::from_slice(&bytes).expect("the claims are JSON")
}

#[tokio::test]
async fn orders_need_a_valid_bearer_token() {
    let shop = Shop::start().await;
    let token = shop.user("cy_tokens").await;
    let other = shop.user("dee_tokens").await;
    let tea = shop.product("Tea", 100, 5).await;

    let no_token = shop.app.get("/orders").await;
    assert_eq!(no_token.status(), 401);
    let challenge = no_token.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("Bearer"), "{challenge}");

    // The claims of one user with the signature of another: a forgery.
    let (cy_signed, _) = token.rsplit_once('.').unwrap();
    let (_, dee_signature) = other.rsplit_once('.').unwrap();
    let forged = format!("{cy_signed}.{dee_signature}");
    // One character of the signature changed.
    let mut flipped = token.clone();
    let last = flipped.pop().unwrap();
    flipped.push(if last == 'A' { 'B' } else { 'A' });
    let wrong_scheme = format!("Token {token}");
    for bad in [forged.as_str(), flipped.as_str(), "not-a-jwt", ""] {
        let response = shop.order(bad, &tea["id"], 1).await;
        assert_eq!(response.status(), 401, "{bad}");
        let challenge = response.headers()["www-authenticate"].to_str().unwrap();
        assert!(challenge.starts_with("Bearer"), "{challenge}");
        assert_eq!(json(response).await["error"], "unauthorized");
    }
    let response = shop
        .app
        .client
        .get(shop.app.url("/orders"))
        .header("authorization", wrong_scheme)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    // None of them took any stock.
    assert_eq!(shop.stock(&tea).await, 5);
}

#[tokio::test]
async fn orders_fail_cleanly_for_bad_input_short_stock_and_unknown_products() {
    let shop = Shop::start().await;
    let token = shop.user("eve_stock").await;
    let lamp = shop.product("Lamp", 2500, 2).await;

    let too_many = shop.order(&token, &lamp["id"], 3).await;
    let message = error(too_many, 409).await;
    assert!(message.contains("not enough stock"), "{message}");
    assert_eq!(shop.stock(&lamp).await, 2);

    let unknown = shop.order(&token, &json!(999), 1).await;
    assert!(error(unknown, 404).await.contains("no such product"));

    let zero = shop.order(&token, &lamp["id"], 0).await;
    assert!(error(zero, 400).await.contains("quantity"));
    let not_json = shop
        .app
        .client
        .post(shop.app.url("/orders"))
        .bearer_auth(&token)
        .body("{\"product_id\": 1,")
        .send()
        .await
        .unwrap();
    error(not_json, 400).await;
    assert_eq!(shop.stock(&lamp).await, 2);

    // The whole stock can still be ordered, and then nothing more.
    assert_eq!(shop.order(&token, &lamp["id"], 2).await.status(), 201);
    assert_eq!(shop.stock(&lamp).await, 0);
    error(shop.order(&token, &lamp["id"], 1).await, 409).await;
    // Only the successful order was stored.
    let list = json(shop.get_as(&token, "/orders").await).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn users_see_only_their_own_orders() {
    let shop = Shop::start().await;
    let owner = shop.user("fay_owner").await;
    let snoop = shop.user("gus_snoop").await;
    let pen = shop.product("Pen", 150, 10).await;

    let order = json(shop.order(&owner, &pen["id"], 2).await).await;
    let path = format!("/orders/{}", order["id"]);
    assert_eq!(shop.get_as(&owner, &path).await.status(), 200);

    // Someone else's order looks exactly like one that does not exist.
    let snooped = json(shop.get_as(&snoop, &path).await).await;
    let missing = json(shop.get_as(&snoop, "/orders/424242").await).await;
    assert_eq!(
        (&snooped["status"], &snooped["error"]),
        (&json!(404), &json!("not_found"))
    );
    assert_eq!(
        (&missing["status"], &missing["error"]),
        (&json!(404), &json!("not_found"))
    );
    assert_eq!(json(shop.get_as(&snoop, "/orders").await).await, json!([]));
    assert_eq!(shop.get_as(&owner, "/orders/abc").await.status(), 404);
}

#[tokio::test]
async fn concurrent_orders_never_sell_more_than_the_stock() {
    let shop = Shop::start().await;
    let token = shop.user("hal_rush").await;
    let ticket = shop.product("Concert ticket", 5000, 5).await;

    let orders = (0..12).map(|_| shop.order(&token, &ticket["id"], 1));
    let mut statuses: Vec<u16> = futures_util::future::join_all(orders)
        .await
        .into_iter()
        .map(|response| response.status().as_u16())
        .collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [[201; 5].as_slice(), &[409; 7]].concat());
    assert_eq!(shop.stock(&ticket).await, 0);
    let list = json(shop.get_as(&token, "/orders").await).await;
    assert_eq!(list.as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn the_catalog_is_a_rest_resource_with_checked_fields() {
    let shop = Shop::start().await;
    for (name, price_cents) in [("A", 1), ("B", 2), ("C", 3)] {
        shop.product(name, price_cents, 1).await;
    }
    let list = json(shop.app.get("/products").await).await;
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|product| product["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["A", "B", "C"]);

    let client = &shop.app.client;
    let replaced = client
        .put(shop.app.url("/products/2"))
        .bearer_auth(&shop.admin)
        .json(&json!({"name": "B2", "price_cents": 20, "stock": 9}))
        .send()
        .await
        .unwrap();
    assert_eq!(replaced.status(), 200);
    assert_eq!(
        json(replaced).await,
        json!({"id": 2, "name": "B2", "price_cents": 20, "stock": 9})
    );
    let missing = client
        .put(shop.app.url("/products/99"))
        .bearer_auth(&shop.admin)
        .json(&json!({"name": "X", "price_cents": 1, "stock": 1}))
        .send()
        .await
        .unwrap();
    error(missing, 404).await;

    let bad_fields = [
        (json!({"name": "", "price_cents": 1, "stock": 1}), "name"),
        (
            json!({"name": "X", "price_cents": -1, "stock": 1}),
            "price_cents",
        ),
        (json!({"name": "X", "stock": 1}), "price_cents"),
        (json!({"name": "X", "price_cents": 1, "stock": -5}), "stock"),
        (json!({"name": "X", "price_cents": 1}), "stock"),
    ];
    for (body, field) in bad_fields {
        let message = error(shop.post_as(&shop.admin, "/products", &body).await, 400).await;
        assert!(message.contains(field), "{body}: {message}");
    }

    let deleted = client
        .delete(shop.app.url("/products/1"))
        .bearer_auth(&shop.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    error(shop.app.get("/products/1").await, 404).await;
    let again = client
        .delete(shop.app.url("/products/1"))
        .bearer_auth(&shop.admin)
        .send()
        .await
        .unwrap();
    error(again, 404).await;
    assert_eq!(
        json(shop.app.get("/products").await).await,
        json!([
            {"id": 2, "name": "B2", "price_cents": 20, "stock": 9},
            {"id": 3, "name": "C", "price_cents": 3, "stock": 1},
        ])
    );
}

#[tokio::test]
async fn catalog_writes_need_the_admin_role_and_reads_are_public() {
    let shop = Shop::start().await;
    let buyer = shop.user("jo_buyer").await;
    let cup = shop.product("Cup", 300, 4).await;
    let body = json!({"name": "Forged", "price_cents": 1, "stock": 1});

    // Reads need no token.
    assert_eq!(shop.app.get("/products").await.status(), 200);
    assert_eq!(shop.stock(&cup).await, 4);

    // No token: 401 from the gateway, with a challenge.
    let anonymous = shop.post("/products", &body).await;
    assert_eq!(anonymous.status(), 401);
    let challenge = anonymous.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");

    // A valid token without the admin role: 403, for every write.
    let forbidden = shop.post_as(&buyer, "/products", &body).await;
    assert_eq!(forbidden.status(), 403);
    let challenge = forbidden.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("insufficient_scope"), "{challenge}");
    assert!(error(forbidden, 403).await.contains("role admin"));
    let reserve = shop
        .post_as(
            &buyer,
            &format!("/products/{}/reserve", cup["id"]),
            &json!({"quantity": 4}),
        )
        .await;
    assert_eq!(reserve.status(), 403);
    let delete = shop
        .app
        .client
        .delete(shop.app.url(&format!("/products/{}", cup["id"])))
        .bearer_auth(&buyer)
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 403);
    assert_eq!(shop.stock(&cup).await, 4);
    // Yet an order reserves stock: `orders` calls `reserve` in-process.
    assert_eq!(shop.order(&buyer, &cup["id"], 1).await.status(), 201);
    assert_eq!(shop.stock(&cup).await, 3);
}

#[tokio::test]
async fn orders_trust_only_the_claims_the_gateway_verified() {
    let shop = Shop::start().await;
    let owner = shop.user("kim_owner").await;
    let other = shop.user("lee_other").await;
    let pen = shop.product("Pen", 150, 10).await;
    assert_eq!(shop.order(&owner, &pen["id"], 1).await.status(), 201);

    // `lee` claims to be `kim` through the headers the gateway sets: they are
    // dropped, and `lee` sees only `lee`'s (no) orders.
    let spoofed = shop
        .app
        .client
        .get(shop.app.url("/orders"))
        .bearer_auth(&other)
        .header("x-nimbus-auth-subject", "kim_owner")
        .header("x-nimbus-auth-claims", r#"{"sub":"kim_owner"}"#)
        .header("x-nimbus-auth-provider", "users")
        .send()
        .await
        .unwrap();
    assert_eq!(spoofed.status(), 200);
    assert_eq!(json(spoofed).await, json!([]));
    // And without a token the headers alone get nowhere.
    let headers_only = shop
        .app
        .client
        .get(shop.app.url("/orders"))
        .header("x-nimbus-auth-subject", "kim_owner")
        .header("x-nimbus-auth-provider", "users")
        .send()
        .await
        .unwrap();
    assert_eq!(headers_only.status(), 401);
    let mine = json(shop.get_as(&owner, "/orders").await).await;
    assert_eq!(mine.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn placed_orders_reach_inventory_and_notifier_asynchronously() {
    let shop = Shop::start().await;
    let token = shop.user("ivo_events").await;
    let tea = shop.product("Green tea", 450, 10).await;
    let mug = shop.product("Mug", 1200, 3).await;
    assert_eq!(shop.reserved(&tea).await, 0);

    let first = shop.order(&token, &tea["id"], 3).await;
    assert_eq!(first.status(), 201);
    let first = json(first).await;
    let second = json(shop.order(&token, &tea["id"], 2).await).await;
    let third = json(shop.order(&token, &mug["id"], 1).await).await;

    eventually(
        "inventory to record both tea orders",
        EVENTUALLY,
        || async { (shop.reserved(&tea).await == 5).then_some(()) },
    )
    .await;
    eventually("inventory to record the mug order", EVENTUALLY, || async {
        (shop.reserved(&mug).await == 1).then_some(())
    })
    .await;
    let notifications = eventually("a notification for each order", EVENTUALLY, || async {
        let notifications = shop.notifications("ivo_events").await;
        (notifications.len() == 3).then_some(notifications)
    })
    .await;
    let order_ids: Vec<&Value> = notifications.iter().map(|n| &n["order_id"]).collect();
    assert_eq!(order_ids, [&first["id"], &second["id"], &third["id"]]);
    assert_eq!(notifications[0]["user"], "ivo_events");
    assert_eq!(
        notifications[0]["text"],
        format!(
            "Thank you for your order {}: 3 x product {}, 13.50 in total.",
            first["id"], tea["id"]
        )
    );
    // Nobody else was notified.
    assert_eq!(
        shop.notifications("someone_else").await,
        Vec::<Value>::new()
    );

    // The same event again, as a redelivery or a second publish would bring
    // it: both subscribers handle it, and neither counts the order twice.
    let queue = shop.app.app.backends().queue.clone();
    queue
        .publish("shop", "orders.created", first.to_string().as_bytes(), &[])
        .await
        .unwrap();
    shop.drained("inventory").await;
    shop.drained("notifier").await;
    assert_eq!(shop.reserved(&tea).await, 5);
    assert_eq!(shop.notifications("ivo_events").await, notifications);
    for function in ["inventory", "notifier"] {
        let stats = queue.stats(&consumer(function)).await.unwrap();
        assert_eq!(stats.dead, 0, "{function}");
    }
}

#[tokio::test]
async fn a_bouncing_mailbox_ends_in_dead_letters_and_the_order_still_stands() {
    let shop = Shop::start().await;
    let token = shop.user("bounce").await;
    let pen = shop.product("Pen", 150, 10).await;

    let response = shop.order(&token, &pen["id"], 2).await;
    assert_eq!(response.status(), 201);
    let order = json(response).await;
    assert_eq!(order["user"], "bounce");

    // The notifier fails all five attempts; the message is kept with the error.
    let queue = shop.app.app.backends().queue.clone();
    let dead = eventually(
        "the notification to be dead-lettered",
        EVENTUALLY,
        || async {
            queue
                .dead_letters(&consumer("notifier"))
                .await
                .unwrap()
                .into_iter()
                .next()
        },
    )
    .await;
    assert_eq!(dead.attempts, 5);
    assert_eq!(dead.message.topic, "orders.created");
    assert!(
        dead.error.contains("mailbox unavailable for bounce"),
        "{}",
        dead.error
    );
    let event: Value = serde_json::from_slice(&dead.message.payload).unwrap();
    assert_eq!(event, order);
    assert_eq!(shop.notifications("bounce").await, Vec::<Value>::new());

    // Inventory, a separate subscriber, handled the same event.
    eventually("inventory to record the order", EVENTUALLY, || async {
        (shop.reserved(&pen).await == 2).then_some(())
    })
    .await;
    assert_eq!(queue.stats(&consumer("inventory")).await.unwrap().dead, 0);
    // And the order is the user's, as placed.
    let orders = json(shop.get_as(&token, "/orders").await).await;
    assert_eq!(orders, json!([order]));
}
