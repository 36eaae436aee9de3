// The front's check of an HTTP inference request, before tritonserver parses it (njs).
//
// Triton 2.51 allocates a JSON-encoded input ("data") by its declared shape before it reads
// the data: a body of a few bytes declaring [1099511627776] elements ends the server
// (std::bad_alloc).  Every element of "data" takes at least one byte of the request, so an
// input with more elements than the request header has bytes is refused here (400).
//
// Triton's JSON parser keeps the first of two equal keys and decodes \u escapes in keys;
// JSON.parse keeps the last.  So that both read the same request, a header with a backslash,
// or with more "shape" keys in its text than the parsed objects have, is refused too (no
// client of this project writes either).

function refuse(r, status, message) {
    r.headersOut['Content-Type'] = 'application/json';
    r.return(status, JSON.stringify({error: message}));
}

function countShapes(value) {
    if (Array.isArray(value)) {
        return value.reduce((sum, item) => sum + countShapes(item), 0);
    }
    if (value === null || typeof value !== 'object') {
        return 0;
    }
    return Object.keys(value).reduce(
        (sum, key) => sum + countShapes(value[key]), 'shape' in value ? 1 : 0);
}

function problem(request, text) {
    if (text.indexOf('\\') >= 0) {
        return 'the request header has a backslash escape; send names and values without';
    }
    if (text.split('"shape"').length - 1 !== countShapes(request)) {
        return 'the request header repeats a "shape" key';
    }
    const inputs = request !== null && Array.isArray(request.inputs) ? request.inputs : [];
    for (let i = 0; i < inputs.length; i++) {  // njs 0.7 (Debian bookworm) has no for-of
        const input = inputs[i];
        if (input === null || typeof input !== 'object' || !('data' in input)) {
            continue;
        }
        if (!Array.isArray(input.shape)) {
            return 'an input with "data" needs a "shape" list';
        }
        let elements = 1;
        for (let d = 0; d < input.shape.length; d++) {
            const dim = input.shape[d];
            if (!Number.isSafeInteger(dim) || dim < 0) {
                return `input shape ${JSON.stringify(input.shape)} is not a list of sizes`;
            }
            elements *= dim;
            if (elements > text.length) {
                return `input shape ${JSON.stringify(input.shape)} has more elements than ` +
                    'the request has bytes';
            }
        }
    }
    return null;
}

function infer(r) {
    const body = r.requestBuffer;
    if (body === undefined) {  // not kept in memory: larger than the front's body buffer
        return refuse(r, 413, 'request body too large');
    }
    let length = body.length;
    const declared = r.headersIn['Inference-Header-Content-Length'];
    if (declared !== undefined) {
        if (!/^[0-9]{1,12}$/.test(declared) || Number(declared) > body.length) {
            return refuse(r, 400, 'Inference-Header-Content-Length is not a length within ' +
                'the body');
        }
        length = Number(declared);
    }
    if (length > Number(r.variables.d2t_json_limit)) {
        return refuse(r, 413, `request header over ${r.variables.d2t_json_limit} bytes of ` +
            'JSON: send the image as a binary tensor (Inference-Header-Content-Length)');
    }
    const text = length > 0 ? body.slice(0, length).toString() : '';
    let request;
    try {
        request = JSON.parse(text);
    } catch (error) {
        return refuse(r, 400, 'the request header is not JSON');
    }
    const found = problem(request, text);
    if (found !== null) {
        return refuse(r, 400, found);
    }
    r.internalRedirect('@triton');
}

export default {infer};
