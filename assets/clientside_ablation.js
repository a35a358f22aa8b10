/* Clientside callbacks of the ablation panel (callbacks/ablation.py): window.dash_clientside.atlas_ablation.<name>, referenced
 * there with dash.ClientsideFunction(namespace="atlas_ablation", function_name="<name>"). */
window.dash_clientside = window.dash_clientside || {};
window.dash_clientside.atlas_ablation = Object.assign(window.dash_clientside.atlas_ablation || {}, {
    /* the last progress of a finished run, from its result (the progress bar and its text) */
    progress_from_result: function(result) {
        const p = result && result.progress;
        if (!p || p.length !== 3) { return [window.dash_clientside.no_update, window.dash_clientside.no_update,
                                            window.dash_clientside.no_update]; }
        return [p[0], p[1], p[2]];
    }
});
