"""Upper-cases the JSON field `$.text`, or the whole value when it is not JSON (world `mapper-udf`)."""
import eddy_udf


@eddy_udf.map
def uppercase(event):
    try:
        doc = event.json()
    except ValueError:  # not JSON (or not UTF-8): upper-case the whole value
        try:
            return event.with_value(event.text().upper().encode("utf-8"))
        except UnicodeDecodeError:
            return event.with_value(event.value.upper())
    if isinstance(doc, dict) and isinstance(doc.get("text"), str):
        doc["text"] = doc["text"].upper()
        return event.with_json(doc)
    return event
