/* Clientside callbacks of the detail views (callbacks/detail.py): window.dash_clientside.atlas_detail.<name>, referenced
 * there with dash.ClientsideFunction(namespace="atlas_detail", function_name="<name>"). */
window.dash_clientside = window.dash_clientside || {};
window.dash_clientside.atlas_detail = Object.assign(window.dash_clientside.atlas_detail || {}, {
    /* shows the Sentence, Image or Model View chosen in the detail tabs */
    show_view: function(tab) {
        var s = function(t) { return {display: tab === t ? "block" : "none"}; };
        return [s("sentence"), s("image"), s("model")];
    },
    /* marks the current head in the Sentence View's head checklist (drawn always, so not a choice): one
     * style rule, in a style element of its own, on the option's label — "(current, always drawn)",
     * bold, not clickable. A style rule, not the label's own attributes: the checklist re-renders its
     * labels (React would drop a class set here), and a head change re-renders no Dash component. */
    mark_current_head: function(head, options) {
        var el = window.__atlasCurrentHeadStyle;  /* this script's own style element, made once */
        if (!el) { el = window.__atlasCurrentHeadStyle = document.createElement('style'); document.head.appendChild(el); }
        var k = (options || []).findIndex(function(o) { return String(o.value) === String(head); });
        var sel = '#sentence-heads label[data-option-index="' + k + '"]';
        el.textContent = k < 0 ? '' : sel + ' { font-weight: 600; pointer-events: none; }\n' +
            sel + '::after { content: " (current, always drawn)"; }';
        return window.dash_clientside.no_update;
    }
});
