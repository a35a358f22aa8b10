/* Clientside callbacks of the Runs & precompute tab (callbacks/jobs.py): window.dash_clientside.atlas_jobs.<name>, referenced
 * there with dash.ClientsideFunction(namespace="atlas_jobs", function_name="<name>"). */
window.dash_clientside = window.dash_clientside || {};
window.dash_clientside.atlas_jobs = Object.assign(window.dash_clientside.atlas_jobs || {}, {
    /* the tab's tables from what the jobs tick found (jobs-shown holds only the parts that changed, or all of
     * them when the tab has just been mounted) */
    show_tables: function(shown) {
        var NU = window.dash_clientside.no_update, s = shown || {};
        return ['table', 'status', 'runs'].map(function(k) { return k in s ? s[k] : NU; });
    },
    /* an upload is size-checked in the browser first: no oversize body is sent */
    check_upload: function(contents, filename, cfg) {
        if (!contents) { return [window.dash_clientside.no_update, window.dash_clientside.no_update]; }
        var limit = (cfg && cfg.upload_max_bytes) || 5242880;
        var b64 = (contents.split(',')[1] || '').replace(/=+$/, '');
        var n = Math.floor(b64.length * 3 / 4);
        var name = String(filename || 'upload').split(/[\\/]/).pop();
        var size = function(b) { return b >= 1048576 ? (b / 1048576).toFixed(1) + ' MB' :
                                        b >= 1024 ? (b / 1024).toFixed(1) + ' KB' : b + ' bytes'; };
        if (n > limit) {
            return [null, 'upload ' + name + ' is ' + size(n) + ', over the ' + size(limit) + ' limit: upload a smaller file'];
        }
        return [{contents: contents, filename: filename, t: Date.now()}, 'checking ' + name + ' …'];
    }
});
