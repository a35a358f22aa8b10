"""Layout of the "your input" tab: a new text or image placed into every head's stored projection."""
from dash import dcc, html

from layouts import ids


def panel():
    return html.Div(id=ids.INPUT_VIEW, className="view", children=[
        html.Div("Run your own input through the run's model: its queries and keys are placed into the stored "
                 "projection of every head (the corpus is not recomputed). PCA placement is exact; t-SNE/UMAP "
                 "placements are approximate (the weighted mean of the nearest stored points) unless the real "
                 "transform is switched on for the current head.", className="note"),
        html.Div(className="row-inline", style={"alignItems": "flex-start"}, children=[
            html.Div(id=ids.INPUT_TEXT_BOX, children=[
                dcc.Textarea(id=ids.INPUT_TEXT, value="", placeholder="type a sentence, e.g. The dog chased the ball.",
                             style={"width": "460px", "height": "54px"}),
            ]),
            html.Div(id=ids.INPUT_UPLOAD_BOX, style={"display": "none"}, children=[
                dcc.Upload(id=ids.INPUT_UPLOAD, accept="image/png,image/jpeg", multiple=False, max_size=-1,
                           children=html.Div(["drop a PNG/JPEG (≤ 5 MB) here or ", html.A("choose a file")]),
                           style={"width": "380px", "height": "50px", "lineHeight": "50px", "borderWidth": "1px",
                                  "borderStyle": "dashed", "borderRadius": "5px", "textAlign": "center",
                                  "fontSize": "13px"}),
            ]),
            html.Div([html.Button("Run the model", id=ids.INPUT_SUBMIT, n_clicks=0),
                      dcc.Checklist(id=ids.INPUT_EXACT, value=[], className="toggle", options=[
                          {"label": "real t-SNE/UMAP transform for the current head (seconds per head; "
                                    "the first UMAP one compiles numba)", "value": "on"}])]),
        ]),
        html.Div(className="row-inline", children=[
            html.Div(id=ids.INPUT_STATUS, className="note"),
            html.Div("running… (the model, then every head)", id=ids.INPUT_RUNNING, className="note",
                     style={"display": "none"}),
            html.Div(id=ids.INPUT_JOB_MSG, className="note"),
        ]),
        html.Div(id=ids.INPUT_INFO, className="note"),
        dcc.Store(id=ids.INPUT_REQUEST, data=None),
        dcc.Store(id=ids.INPUT_STORE, data=None),
        dcc.Store(id=ids.INPUT_TRANSFORM_REQUEST, data=None),
        dcc.Store(id=ids.INPUT_TRANSFORM_STORE, data=None),
        dcc.Loading(type="dot", children=[
            dcc.Graph(id=ids.INPUT_GRID_GRAPH, config={"displaylogo": False, "scrollZoom": True}),
        ]),
        html.Div(className="row-inline", style={"alignItems": "flex-start"}, children=[
            dcc.Graph(id=ids.INPUT_HEAD_GRAPH, config={"displaylogo": False, "scrollZoom": True},
                      style={"flex": "1", "minWidth": "480px"}),
            dcc.Graph(id=ids.INPUT_SENTENCE_GRAPH, config={"displaylogo": False}, style={"flex": "1", "minWidth": "420px"}),
        ]),
    ])
