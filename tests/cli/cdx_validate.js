// Validates a CycloneDX JSON BOM with the CycloneDX project's own validator.
// usage: node cdx_validate.js SPEC FILE; prints "valid" or the errors (exit 1).
'use strict';
const fs = require('fs');
const { Validation, Spec } = require('@cyclonedx/cyclonedx-library');

const versions = { '1.6': Spec.Version.v1dot6, '1.7': Spec.Version.v1dot7 };
const [spec, file] = process.argv.slice(2);
if (!versions[spec]) {
	console.error(`unsupported spec ${spec}`);
	process.exit(2);
}
new Validation.JsonStrictValidator(versions[spec])
	.validate(fs.readFileSync(file, 'utf8'))
	.then((errors) => {
		if (errors === null) {
			console.log('valid');
			return;
		}
		console.log(JSON.stringify(errors, null, 2));
		process.exit(1);
	})
	.catch((e) => {
		console.error(String(e));
		process.exit(2);
	});
