"""The words of the twin's logs: templates per service and role, causes, stack traces.

Mostly data: what each Online Boutique service prints on traffic (after the real
services' log lines), generic lines by role for every other topology, failure messages by
cause, stack traces in the style of each service's language, and the timestamp format.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from functools import lru_cache

from twin.telemetry.spans import EPOCH_UNIX_S

PRODUCTS = ("OLJCESPC7Z", "66VCHSJNUP", "1YMWWN1N4O", "L9ECAV7KIM", "2ZYFJ3GM2N", "9SIQT8TOJO")
CURRENCIES = ("EUR", "USD", "JPY", "GBP", "CAD", "TRY")
WORDS = ("clothing", "accessories", "footwear", "hair", "decor", "kitchen")

# traffic templates (INFO) of the Online Boutique services, then generic ones by role
TRAFFIC: dict[str, tuple[tuple[str, str], ...]] = {
    "frontend": (
        (
            "frontend.product",
            "request complete method=GET path=/product/{product} status=200 duration_ms={d}",
        ),
        ("frontend.home", "request complete method=GET path=/ status=200 duration_ms={d}"),
        ("frontend.cart", "request complete method=GET path=/cart status=200 duration_ms={d}"),
        ("frontend.add", "request complete method=POST path=/cart status=302 duration_ms={d}"),
        (
            "frontend.currency",
            "request complete method=POST path=/setCurrency status=302 "
            "duration_ms={d} currency={currency}",
        ),
    ),
    "cartservice": (
        ("cart.get", "GetCartAsync called with userId={user}"),
        ("cart.add", "AddItemAsync called with userId={user}, productId={product}, quantity={n}"),
    ),
    "productcatalogservice": (
        ("catalog.get", "served GetProduct id={product} duration_ms={d}"),
        ("catalog.list", "served ListProducts count=9 duration_ms={d}"),
    ),
    "currencyservice": (
        ("currency.convert", "conversion request successful from={currency} duration_ms={d}"),
        ("currency.list", "Getting supported currencies..."),
    ),
    "paymentservice": (
        ("payment.charge", "Transaction processed: visa ending 4242 Amount: {currency}{amount}"),
    ),
    "shippingservice": (
        ("shipping.quote", "[GetQuote] completed request duration_ms={d}"),
        ("shipping.ship", "[ShipOrder] completed request tracking_id={tracking}"),
    ),
    "emailservice": (
        (
            "email.send",
            "A request to send order confirmation email to {user}@example.com has been received.",
        ),
    ),
    "checkoutservice": (
        ("checkout.place", '[PlaceOrder] user_id="{user}" user_currency="{currency}"'),
        ("checkout.paid", "payment went through (transaction_id: {order})"),
    ),
    "recommendationservice": (
        ("recommendation.list", "[Recv ListRecommendations] product_ids=['{product}']"),
    ),
    "adservice": (("ad.get", "received ad request (context_words=[{word}])"),),
    "redis-cart": (("redis.slowlog", "HGET cart:{user} took {us} microseconds"),),
}
GENERIC = {
    "entry": (("http.request", "request complete method=GET path=/api/{word} status=200 "
               "duration_ms={d}"),),
    "service": (("grpc.request", "finished unary call grpc.method=/{service}/Handle "
                 "grpc.code=OK duration_ms={d}"),),
    "store": (("store.query", "query ok duration_us={us}"),),
}  # fmt: skip

MESSAGES = {
    "call.timeout": (
        "ERROR",
        "rpc error: code = DeadlineExceeded desc = context deadline exceeded calling {callee}",
    ),
    "call.refused": (
        "ERROR",
        "rpc error: code = Unavailable desc = connection error: dial tcp {callee}:{port}: "
        "connect: connection refused",
    ),
    "call.rejected": (
        "ERROR",
        "rpc error: code = ResourceExhausted desc = {callee} rejected the request: queue full",
    ),
    "call.breaker": ("ERROR", "circuit breaker open for {callee}: failing fast"),
    "call.error": ("ERROR", "rpc error: code = Internal desc = call to {callee} failed"),
    "request.error": ("ERROR", "internal error handling request: {reason}"),
    "request.exception": ("ERROR", "unhandled exception handling request (version {version})"),
    "request.slow": ("WARN", "slow request: duration_ms={d} above {limit_ms} ms"),
    "code.wrong_value": (
        "WARN",
        "{Camel}Service#handle returned an unexpected value; response check failed at line {n}",
    ),
    "code.caught": ("ERROR", "{Camel}ServiceImpl: exception caught while handling request"),
    "memory.high": ("WARN", "memory usage high: {mb} MiB of {limit} MiB limit"),
    "pod.oom": (
        "ERROR",
        "OOMKilled: container {service} in pod {pod} exceeded its memory limit of {limit} MiB "
        "(exit code 137)",
    ),
    "pod.backoff": (
        "WARN",
        "Back-off restarting failed container {service} in pod {pod} "
        "(restart {restarts}, waiting {backoff} s)",
    ),
    "pod.crash": ("ERROR", "container {service} in pod {pod} exited with code 2"),
    "pod.ready": ("INFO", "server started, listening on port {port} (pod {pod})"),
    "pod.shutdown": ("INFO", "received SIGTERM, shutting down gracefully (pod {pod})"),
    "deploy.start": ("INFO", "starting {service} version {version}"),
    "deploy.rollback": ("INFO", "rolled back {service} to the previous version"),
    "breaker.open": ("ERROR", "circuit breaker open for calls to {callee}"),
    "breaker.half_open": ("WARN", "circuit breaker half-open for {callee}: sending trial calls"),
    "breaker.closed": ("INFO", "circuit breaker closed for {callee}: calls resumed"),
}
REASONS = ("unexpected nil value", "invalid argument", "failed to decode payload", "index error")

STACKS = {
    "go": "panic: runtime error: invalid memory address or nil pointer dereference\n"
    "[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x8a3f21]\n\n"
    "goroutine {n} [running]:\nmain.(*{Camel}).Handle(0xc0001a2000, {{0xc0, 0x1}})\n"
    "\t/src/{service}/handlers.go:{line} +0x1d2\nmain.(*server).ServeHTTP(...)\n"
    "\t/src/{service}/main.go:88 +0x3a",
    "java": 'java.lang.NullPointerException: Cannot invoke "String.length()" because '
    '"key" is null\n\tat hipstershop.{Camel}.handle({Camel}.java:{line})\n'
    "\tat io.grpc.stub.ServerCalls$UnaryServerCallHandler.onHalfClose(ServerCalls.java:182)\n"
    "\tat java.base/java.lang.Thread.run(Thread.java:833)",
    "python": "Traceback (most recent call last):\n"
    '  File "/app/{service}_server.py", line {line}, in Handle\n'
    "    item = catalog[request.product_id]\nKeyError: '{product}'",
    "node": "TypeError: Cannot read properties of undefined (reading 'units')\n"
    "    at handle (/usr/src/app/server.js:{line}:27)\n"
    "    at Object.onReceiveMessage (/usr/src/app/node_modules/@grpc/grpc-js/build/src/"
    "server.js:1024:21)",
    "csharp": "System.NullReferenceException: Object reference not set to an instance of an "
    "object.\n   at {Camel}.Handle(String userId) in /app/{Camel}.cs:line {line}\n"
    "   at Grpc.AspNetCore.Server.Internal.CallHandlers.UnaryServerCallHandler`3.HandleCall()",
}
LANGUAGE_WORDS = (
    ("node.js", "node"),
    ("python", "python"),
    ("java", "java"),
    ("c#", "csharp"),
    ("go", "go"),
)


def language_of(description: str) -> str:
    """The service's language from its description (stack trace style); Go by default."""
    words = description.lower().replace(";", " ").replace(",", " ").split()
    for word, lang in LANGUAGE_WORDS:
        if word in words or (word == "node.js" and "node.js" in description.lower()):
            return lang
    return "go"


def camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace("_", "-").split("-"))


@lru_cache(maxsize=1024)
def _day_iso(day: int) -> str:
    return datetime.fromtimestamp(EPOCH_UNIX_S + day * 86400, tz=UTC).strftime("%Y-%m-%d")


def iso_time(t: float) -> str:
    """Simulated seconds → ISO 8601 UTC with milliseconds, on the scenario's calendar.

    The epoch is a midnight, so only the date needs the calendar (cached per day).
    """
    ms = int(math.floor(t * 1000.0 + 1e-6))
    day, ms_of_day = divmod(ms, 86_400_000)
    sec, ms = divmod(ms_of_day, 1000)
    minute, sec = divmod(sec, 60)
    hour, minute = divmod(minute, 60)
    return f"{_day_iso(day)}T{hour:02d}:{minute:02d}:{sec:02d}.{ms:03d}Z"
