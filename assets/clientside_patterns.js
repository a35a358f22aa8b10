/* Clientside callbacks of the Patterns tab (callbacks/patterns.py): window.dash_clientside.atlas_patterns.<name>, referenced
 * there with dash.ClientsideFunction(namespace="atlas_patterns", function_name="<name>"). */
window.dash_clientside = window.dash_clientside || {};
window.dash_clientside.atlas_patterns = Object.assign(window.dash_clientside.atlas_patterns || {}, {
    /* highlights the current head's row of the patterns table */
    highlight_row: function(layer, head) {
        var rows = document.querySelectorAll('#patterns-table-el tr[data-head]');
        var want = layer + ':' + head;
        rows.forEach(function(tr) {
            var on = tr.getAttribute('data-head') === want, first = tr.querySelector('td');
            tr.style.background = on ? '#fff3cd' : '';
            if (first) { first.style.fontWeight = on ? '700' : ''; }
        });
        return window.dash_clientside.no_update;
    }
});
