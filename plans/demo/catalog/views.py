"""Views of the shop: what a cutover checks after the switch.

- ``GET /healthz``: 200 ``{"db": "ok", "database": NAME, "tls": bool}``
  after a query through Django's connection, 503 when the database fails;
- ``GET /products/``: the read path;
- ``POST /orders/``: the write path (JSON or form: ``product`` as an id or
  sku, ``quantity``), 201 with the new order.
"""

import json
import logging
from decimal import Decimal

from django.db import DatabaseError, connection, transaction
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from .models import Order, Product

log = logging.getLogger(__name__)


@require_GET
def healthz(request):
    """Answer 200 if the database answers a query, 503 otherwise."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1, current_database()")
            one, database = cursor.fetchone()
        tls = bool(connection.connection.info.ssl_in_use)
    except DatabaseError as exc:
        # libpq messages name the host and user, never the password; the
        # response stays terse anyway.
        log.error("healthz: database check failed: %s", str(exc).strip())
        return JsonResponse({"db": "error", "error": type(exc).__name__}, status=503)
    if one != 1:
        return JsonResponse({"db": "error", "error": "unexpected answer"}, status=503)
    return JsonResponse({"db": "ok", "database": database, "tls": tls})


def _product_json(p):
    return {
        "id": p.id,
        "sku": p.sku,
        "name": p.name,
        "price": str(p.price),
        "category": p.category.name,
    }


@require_GET
def products(request):
    """List the products."""
    items = [_product_json(p) for p in Product.objects.select_related("category")]
    return JsonResponse({"products": items, "count": len(items)})


@csrf_exempt
@require_POST
def orders(request):
    """Create an order."""
    if request.content_type == "application/json":
        try:
            data = json.loads(request.body or b"{}")
        except ValueError:
            return JsonResponse({"error": "body is not JSON"}, status=400)
        if not isinstance(data, dict):
            return JsonResponse({"error": "body must be a JSON object"}, status=400)
    else:
        data = request.POST
    ref = str(data.get("product", "")).strip()
    try:
        quantity = int(data.get("quantity", 1))
    except (TypeError, ValueError):
        return JsonResponse({"error": "quantity must be a whole number"}, status=400)
    if not ref or quantity < 1:
        return JsonResponse({"error": "product and a positive quantity are required"}, status=400)
    lookup = {"pk": int(ref)} if ref.isdigit() else {"sku": ref}
    try:
        with transaction.atomic():
            product = Product.objects.select_related("category").get(**lookup)
            order = Order.objects.create(product=product, quantity=quantity)
    except Product.DoesNotExist:
        return JsonResponse({"error": "no such product: %s" % ref}, status=404)
    total = (product.price * Decimal(quantity)).quantize(Decimal("0.01"))
    return JsonResponse(
        {"id": order.id, "product": _product_json(product), "quantity": quantity, "total": str(total)},
        status=201,
    )
