// Validates Kubernetes objects against the Kubernetes OpenAPI schemas shipped
// (as compiled validators, offline) by the npm package kubernetes-models.
//
// usage: node validate_k8s.mjs NODE_MODULES_DIR < objects.json
// stdin: a JSON array of objects (the YAML documents, converted by the test).
// Prints one line per object, "ok KIND NAME" or "error KIND NAME: reason",
// and exits 0 only if every object is valid.
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import path from "node:path";

const modules = process.argv[2];
const objects = JSON.parse(readFileSync(0, "utf8"));

// apiVersion "v1" -> v1/Kind.js, "apps/v1" -> apps/v1/Kind.js
function modelFile(apiVersion, kind) {
	return path.join(modules, "kubernetes-models", ...apiVersion.split("/"), kind + ".js");
}

let failed = 0;
for (const obj of objects) {
	const name = obj?.metadata?.name ?? "?";
	const kind = obj?.kind ?? "?";
	try {
		const mod = await import(pathToFileURL(modelFile(obj.apiVersion, obj.kind)).href);
		const Model = mod[obj.kind];
		new Model(obj).validate();
		console.log(`ok ${kind} ${name}`);
	} catch (e) {
		failed++;
		console.log(`error ${kind} ${name}: ${String(e.message).split("\n").join("; ")}`);
	}
}
process.exit(failed ? 1 : 0);
