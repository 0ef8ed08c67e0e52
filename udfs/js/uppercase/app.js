// Upper-cases the JSON field `$.text`, or the whole value when it is not JSON (world `mapper-udf`).
import * as eddy from "../../../guest-sdk/js/eddy.js";
import log from "eddy:udf/log@0.1.0";

function uppercase(event) {
  let doc;
  try {
    doc = event.json();
  } catch {
    // Not JSON: upper-case the whole value (ASCII only when it is not UTF-8 either).
    try {
      return event.withValue(event.text().toUpperCase());
    } catch {
      return event.withValue(event.value.map((b) => (b >= 0x61 && b <= 0x7a ? b - 32 : b)));
    }
  }
  if (doc !== null && typeof doc === "object" && !Array.isArray(doc) && typeof doc.text === "string") {
    doc.text = doc.text.toUpperCase();
    return event.withJson(doc);
  }
  return event;
}

export const { lifecycle, mapper } = eddy.map(uppercase, { log });
